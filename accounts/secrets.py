"""Encryption at rest for provider keys users bring (BYOK).

Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) behind a ``MultiFernet``, so keys
can be rotated: ``settings.BYOK_ENCRYPTION_KEYS`` (env ``BYOK_ENCRYPTION_KEYS``, comma-
separated url-safe base64 Fernet keys, e.g. from ``Fernet.generate_key()``) lists them;
the first encrypts, every one decrypts. To rotate, prepend a new key, deploy, run
``manage.py byok_reencrypt``, then drop the old key.

When the variable is unset the key is derived from ``SECRET_KEY`` with HKDF-SHA256.
That keeps development and tests working with no environment, but ties the stored keys
to ``SECRET_KEY``: **production must set BYOK_ENCRYPTION_KEYS**.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "mask", "rotate"]

_HKDF_SALT = b"openrouter-byok"
_HKDF_INFO = b"byok-encryption-key-v1"


def _derived_key(secret_key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        return MultiFernet([Fernet(_derived_key(secret_key))])
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"BYOK_ENCRYPTION_KEYS: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


def _current() -> MultiFernet:
    return _fernet(tuple(settings.BYOK_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(text: str) -> str:
    """The Fernet token of ``text`` under the primary key (ASCII, safe for a text column)."""
    return _current().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of a token made by any configured key; ``InvalidToken`` otherwise."""
    return _current().decrypt(token.encode("ascii")).decode()


def rotate(token: str) -> str:
    """The same plaintext re-encrypted under the primary key."""
    return _current().rotate(token.encode("ascii")).decode("ascii")


def mask(text: str) -> str:
    """A short label that identifies a key without revealing it: 'sk-...AbCd'.

    Long keys show their first 3 and last 4 characters; short ones show less, so a label
    never gives away more than a small fraction of the secret.
    """
    text = text.strip()
    if len(text) >= 20:
        return f"{text[:3]}...{text[-4:]}"
    if len(text) >= 8:
        return f"...{text[-2:]}"
    return "..."
