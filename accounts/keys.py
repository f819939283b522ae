"""API key strings: generation, hashing and masking (only the hash is ever stored), and the one
check of a presented key that every door shares."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from openrouter_site.errors import Unauthorized

KEY_PREFIX = "sk-or-v1-"
KEY_PATTERN = re.compile(r"^sk-or-v1-[0-9a-f]{64}$")


def key_generate() -> str:
    return KEY_PREFIX + secrets.token_hex(32)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_label(raw_key: str) -> str:
    """'sk-or-v1-0e6...1c96', as OpenRouter shows a key."""
    return f"{raw_key[:12]}...{raw_key[-4:]}"


def bearer_token(header_value: str | None) -> str | None:
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_check(key, *, now: dt.datetime) -> None:
    """Refuse a presented key that is unknown (None), disabled or expired, in OpenRouter's words.

    ``key`` is anything with ``disabled`` and ``expires_at``: the gateway's cached ``KeyInfo`` or
    an ``ApiKey`` row (the JSON API). Whether a management key may be used is the caller's rule."""
    if key is None:
        raise Unauthorized("User not found.")
    if key.disabled:
        raise Unauthorized("This API key is disabled")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("This API key has expired")
