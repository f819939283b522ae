"""accounts.secrets: BYOK keys encrypted at rest (MultiFernet, rotation), and their masked labels."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from accounts import secrets

PLAINTEXT = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyzAbCd"


def test_round_trip_with_the_key_derived_from_secret_key(settings):
    settings.BYOK_ENCRYPTION_KEYS = []
    token = secrets.encrypt(PLAINTEXT)
    assert PLAINTEXT not in token and token != secrets.encrypt(PLAINTEXT)  # random IV each time
    assert secrets.decrypt(token) == PLAINTEXT
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(secrets.InvalidToken):
        secrets.decrypt(token)


def test_the_first_configured_key_encrypts_and_every_key_decrypts(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BYOK_ENCRYPTION_KEYS = [old]
    token = secrets.encrypt(PLAINTEXT)
    assert Fernet(old.encode()).decrypt(token.encode()).decode() == PLAINTEXT

    settings.BYOK_ENCRYPTION_KEYS = [new, old]  # rotation: new key prepended
    assert secrets.decrypt(token) == PLAINTEXT
    fresh = secrets.encrypt(PLAINTEXT)
    assert Fernet(new.encode()).decrypt(fresh.encode()).decode() == PLAINTEXT
    rotated = secrets.rotate(token)

    settings.BYOK_ENCRYPTION_KEYS = [new]  # old key dropped
    assert secrets.decrypt(rotated) == PLAINTEXT
    with pytest.raises(secrets.InvalidToken):
        secrets.decrypt(token)


def test_a_malformed_configured_key_is_a_configuration_error(settings):
    settings.BYOK_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key #1"):
        secrets.encrypt(PLAINTEXT)


@pytest.mark.django_db(transaction=True)
def test_reencrypt_command_moves_stored_keys_to_the_new_key(settings):
    from django.core.management import call_command

    from accounts import services
    from accounts.models import ProviderKey
    from routing.models import Provider
    from tests.factories import make_account

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BYOK_ENCRYPTION_KEYS = [old]
    provider = Provider.objects.get_or_create(slug="openai", defaults={"name": "OpenAI"})[0]
    stored = services.provider_key_create(account=make_account(), provider=provider, key=PLAINTEXT)
    settings.BYOK_ENCRYPTION_KEYS = [new, old]
    call_command("byok_reencrypt", verbosity=0)
    settings.BYOK_ENCRYPTION_KEYS = [new]
    assert secrets.decrypt(ProviderKey.objects.get(id=stored.id).encrypted_key) == PLAINTEXT


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (PLAINTEXT, "sk-...AbCd"),
        ("  sk-ant-api03-abcdefghijklmnopWXyz\n", "sk-...WXyz"),
        ("short-key-123", "...23"),
        ("tiny", "..."),
    ],
)
def test_mask_shows_only_a_small_part(text, label):
    assert secrets.mask(text) == label
