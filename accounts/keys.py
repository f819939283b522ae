"""API key strings: generation, hashing and masking. Only the hash is ever stored."""

from __future__ import annotations

import hashlib
import re
import secrets

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
