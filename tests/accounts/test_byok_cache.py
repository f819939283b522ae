"""accounts.byok_cache: the gateway's per-account view of decrypted provider keys, and its invalidation."""

from __future__ import annotations

import asyncio
import time

import pytest

from accounts import byok_cache, services
from accounts.models import ProviderKey
from openrouter_site import redis_clients
from routing.models import Provider
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    byok_cache.clear()
    yield
    byok_cache.clear()


@pytest.fixture
def openai():
    return Provider.objects.get_or_create(slug="openai", defaults={"name": "OpenAI"})[0]


@pytest.fixture
def anthropic():
    return Provider.objects.get_or_create(slug="anthropic", defaults={"name": "Anthropic"})[0]


def keys_for(account_id: int) -> dict[str, list[byok_cache.ByokKey]]:
    return asyncio.run(byok_cache.provider_keys_for(account_id))


def test_keys_come_decrypted_by_provider_in_routing_order(openai, anthropic):
    account = make_account()
    fallback = services.provider_key_create(
        account=account, provider=openai, key="sk-fallback-0000000001", is_fallback=True
    )
    first = services.provider_key_create(account=account, provider=openai, key="sk-first-000000000002", always_use=True)
    second = services.provider_key_create(account=account, provider=openai, key="sk-second-00000000003")
    services.provider_key_create(account=account, provider=openai, key="sk-disabled-000000004", disabled=True)
    deleted = services.provider_key_create(account=account, provider=openai, key="sk-deleted-0000000005")
    services.provider_key_delete(provider_key=deleted)
    claude = services.provider_key_create(
        account=account, provider=anthropic, key="sk-ant-0000000000006", allowed_models=["anthropic/claude-3.5-sonnet"]
    )
    services.provider_key_create(account=make_account(), provider=openai, key="sk-someone-else-00007")

    keys = keys_for(account.id)
    assert sorted(keys) == ["anthropic", "openai"]
    assert [(k.id, k.secret, k.prioritized, k.always_use) for k in keys["openai"]] == [
        (str(first.id), "sk-first-000000000002", True, True),
        (str(second.id), "sk-second-00000000003", True, False),
        (str(fallback.id), "sk-fallback-0000000001", False, False),
    ]
    (claude_key,) = keys["anthropic"]
    assert claude_key.id == str(claude.id) and claude_key.provider_slug == "anthropic"
    assert claude_key.allows(model="anthropic/claude-3.5-sonnet")
    assert not claude_key.allows(model="anthropic/claude-3-haiku")
    assert "sk-ant" not in repr(claude_key)  # never in logs
    assert keys_for(make_account().id) == {}


def test_allowlists_restrict_the_key_and_user(openai):
    account = make_account()
    services.provider_key_create(
        account=account,
        provider=openai,
        key="sk-restricted-000000001",
        allowed_api_key_hashes=["a" * 64],
        allowed_user_ids=["u1"],
    )
    (key,) = keys_for(account.id)["openai"]
    assert key.allows(model="openai/gpt-4o", api_key_hash="a" * 64, user_id="u1")
    assert not key.allows(model="openai/gpt-4o", api_key_hash="b" * 64, user_id="u1")
    assert not key.allows(model="openai/gpt-4o", api_key_hash="a" * 64, user_id="u2")


def test_every_service_write_invalidates_the_cached_entry(openai, settings):
    settings.GATEWAY_BYOK_CACHE_SECONDS = 3600
    account = make_account()
    assert keys_for(account.id) == {}
    provider_key = services.provider_key_create(account=account, provider=openai, key="sk-one-000000000000001")
    assert [k.secret for k in keys_for(account.id)["openai"]] == ["sk-one-000000000000001"]

    services.provider_key_update(provider_key=provider_key, key="sk-two-000000000000002", is_fallback=True)
    (key,) = keys_for(account.id)["openai"]
    assert key.secret == "sk-two-000000000000002" and key.prioritized is False

    services.provider_key_update(provider_key=provider_key, disabled=True)
    assert keys_for(account.id) == {}
    services.provider_key_update(provider_key=provider_key, disabled=False)
    assert len(keys_for(account.id)["openai"]) == 1
    services.provider_key_delete(provider_key=provider_key)
    assert keys_for(account.id) == {}


def test_entries_are_cached_until_the_ttl(openai, settings):
    settings.GATEWAY_BYOK_CACHE_SECONDS = 3600
    account = make_account()
    services.provider_key_create(account=account, provider=openai, key="sk-cached-000000000001")
    assert len(keys_for(account.id)["openai"]) == 1
    ProviderKey.objects.filter(account=account).update(disabled=True)  # behind the services' back
    assert len(keys_for(account.id)["openai"]) == 1
    settings.GATEWAY_BYOK_CACHE_SECONDS = 0
    byok_cache.clear()
    assert keys_for(account.id) == {}


def test_a_key_that_no_longer_decrypts_is_skipped(openai, settings):
    from cryptography.fernet import Fernet

    settings.BYOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    account = make_account()
    services.provider_key_create(account=account, provider=openai, key="sk-lost-0000000000001")
    settings.BYOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped
    assert keys_for(account.id) == {}


def test_another_process_invalidates_through_redis(openai, settings):
    if not redis_clients.redis_enabled():
        pytest.skip("cross-process invalidation needs REDIS_URL")
    settings.GATEWAY_BYOK_CACHE_SECONDS = 3600
    account = make_account()
    services.provider_key_create(account=account, provider=openai, key="sk-pubsub-000000000001")
    channel = byok_cache.cache.channel()
    client = redis_clients.sync_client()

    async def scenario() -> tuple[int, int]:
        before = len((await byok_cache.provider_keys_for(account.id))["openai"])
        deadline = time.monotonic() + 5
        while not client.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # Another process changed the key: only its pub/sub message reaches this one.
        await asyncio.to_thread(lambda: ProviderKey.objects.filter(account=account).update(disabled=True))
        client.publish(channel, str(account.id))
        while account.id in byok_cache.cache.entries and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        after = len((await byok_cache.provider_keys_for(account.id)).get("openai", []))
        byok_cache.cache.listener.cancel()
        return before, after

    assert asyncio.run(scenario()) == (1, 0)


def test_an_invalidation_during_a_load_keeps_the_load_out_of_the_cache(openai, settings, monkeypatch):
    settings.GATEWAY_BYOK_CACHE_SECONDS = 3600
    account = make_account()
    services.provider_key_create(account=account, provider=openai, key="sk-racing-000000000001")
    real_load = byok_cache.cache.load_async

    async def load_then_change(account_id):
        keys = await real_load(account_id)
        byok_cache.invalidate(account_id)  # a change committed while this load was in flight
        return keys

    monkeypatch.setattr(byok_cache.cache, "load_async", load_then_change)
    assert len(keys_for(account.id)["openai"]) == 1
    assert account.id not in byok_cache.cache.entries
