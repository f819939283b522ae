"""The hot path's view of an API key, cached in each process.

A lookup costs a dict access; a miss reads the database in a worker thread. Any
change to a key (or to its account's settings) invalidates the entry at once in
this process and, when Redis is configured, in every other process through a
pub/sub message; entries also expire after ``GATEWAY_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.conf import settings

from openrouter_site.process_cache import InvalidatingCache

from .guardrail_rules import GuardrailRule, guardrail_rules_for_key


@dataclass(frozen=True, slots=True)
class KeyInfo:
    hash: str
    key_id: int
    account_id: int
    account_public_id: str
    is_management: bool
    disabled: bool
    limit: int | None  # nano-dollars
    limit_reset: str | None
    expires_at: dt.datetime | None
    training_discount: bool
    creator_user_id: str | None
    purchased: int = 0  # nano-dollars of credits ever bought (free-model limits)
    include_byok_in_limit: bool = False  # BYOK usage counts against ``limit``
    privacy: AccountPrivacy | None = None  # the account's routing defaults (settings page)
    guardrails: tuple[GuardrailRule, ...] = ()  # the key's guardrail and its creator's member guardrail


@dataclass(frozen=True, slots=True)
class AccountPrivacy:
    allow_training_paid: bool = True
    allow_training_free: bool = True
    zdr_only: bool = False
    allowed_providers: tuple[str, ...] = ()
    ignored_providers: tuple[str, ...] = ()


def account_privacy(account) -> AccountPrivacy:
    """An account's routing defaults, as the cached key info carries them (for views that read the account)."""
    return AccountPrivacy(
        allow_training_paid=account.allow_training_paid,
        allow_training_free=account.allow_training_free,
        zdr_only=account.zdr_only,
        allowed_providers=tuple(account.allowed_providers or ()),
        ignored_providers=tuple(account.ignored_providers or ()),
    )


SESSION_PREFIX = "session:"


def session_key_hash(account_id: int) -> str:
    """The key-info entry of an account's signed-in browser session (the chatroom): no API key,
    no key limit; the account's privacy settings and free-model allowance as for its keys."""
    return f"{SESSION_PREFIX}{account_id}"


def _load_session(account_id: int, key_hash: str) -> KeyInfo | None:
    from .models import Account

    account = Account.objects.filter(id=account_id).first()
    if account is None:
        return None
    return KeyInfo(
        hash=key_hash,
        key_id=0,  # no API key: the generation records none
        account_id=account.id,
        account_public_id=account.public_id,
        is_management=False,
        disabled=False,
        limit=None,
        limit_reset=None,
        expires_at=None,
        training_discount=account.allow_training_discount,
        creator_user_id=account.public_id,
        purchased=account.total_purchased,
        privacy=account_privacy(account),
    )


def _load(key_hash: str) -> KeyInfo | None:
    from .models import ApiKey

    if key_hash.startswith(SESSION_PREFIX):
        account_id = key_hash[len(SESSION_PREFIX):]
        return _load_session(int(account_id), key_hash) if account_id.isdigit() else None
    row = (
        ApiKey.objects.filter(hash=key_hash)
        .values(
            "id",
            "account_id",
            "account__public_id",
            "is_management",
            "disabled",
            "limit",
            "limit_reset",
            "expires_at",
            "account__allow_training_discount",
            "account__total_purchased",
            "include_byok_in_limit",
            "account__allow_training_paid",
            "account__allow_training_free",
            "account__zdr_only",
            "account__allowed_providers",
            "account__ignored_providers",
            "creator_id",
        )
        .first()
    )
    if row is None:
        return None
    return KeyInfo(
        hash=key_hash,
        key_id=row["id"],
        account_id=row["account_id"],
        account_public_id=row["account__public_id"],
        is_management=row["is_management"],
        disabled=row["disabled"],
        limit=row["limit"],
        limit_reset=row["limit_reset"],
        expires_at=row["expires_at"],
        training_discount=row["account__allow_training_discount"],
        creator_user_id=row["account__public_id"],
        purchased=row["account__total_purchased"],
        include_byok_in_limit=row["include_byok_in_limit"],
        privacy=AccountPrivacy(
            allow_training_paid=row["account__allow_training_paid"],
            allow_training_free=row["account__allow_training_free"],
            zdr_only=row["account__zdr_only"],
            allowed_providers=tuple(row["account__allowed_providers"] or ()),
            ignored_providers=tuple(row["account__ignored_providers"] or ()),
        ),
        guardrails=guardrail_rules_for_key(
            key_id=row["id"], key_hash=key_hash, account_id=row["account_id"], creator_id=row["creator_id"]
        ),
    )


cache: InvalidatingCache[str, KeyInfo | None] = InvalidatingCache(
    name="keys",
    load=_load,
    ttl=lambda: settings.GATEWAY_KEY_CACHE_SECONDS,
    parse_key=str,
)


async def key_info(key_hash: str) -> KeyInfo | None:
    entry = cache.entries.get(key_hash)
    if entry is not None and entry[0] > time.monotonic():  # the common case, without a coroutine call
        return entry[1]
    return await cache.get(key_hash)


async def session_key_info(account_id: int) -> KeyInfo | None:
    """The account's key info for a signed-in session (cached and invalidated like a key's)."""
    return await key_info(session_key_hash(account_id))


def invalidate(key_hash: str) -> None:
    """Forget a key here and, through Redis, in every other process."""
    cache.invalidate(key_hash)


def invalidate_account(account_id: int) -> None:
    from .models import ApiKey

    for key_hash in ApiKey.objects.filter(account_id=account_id).values_list("hash", flat=True):
        invalidate(key_hash)
    invalidate(session_key_hash(account_id))


def clear() -> None:
    cache.clear()
