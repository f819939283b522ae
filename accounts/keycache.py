"""The hot path's view of an API key, cached in each process.

A lookup costs a dict access; a miss reads the database in a worker thread. Any
change to a key (or to its account's settings) invalidates the entry at once in
this process and, when Redis is configured, in every other process through a
pub/sub message; entries also expire after ``GATEWAY_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from openrouter_site import redis_clients
from openrouter_site.db_threads import in_db_thread

logger = logging.getLogger("openrouter.keycache")

INVALIDATE_CHANNEL = "keys:invalidate"


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


_MISSING = object()
_entries: dict[str, tuple[float, KeyInfo | None]] = {}
_listener_started = False


def _load(key_hash: str) -> KeyInfo | None:
    from .models import ApiKey

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
    )


_load_async = in_db_thread(_load)


async def key_info(key_hash: str) -> KeyInfo | None:
    entry = _entries.get(key_hash)
    now = time.monotonic()
    if entry is not None and entry[0] > now:
        return entry[1]
    if redis_clients.redis_enabled():
        _ensure_listener()
    info = await _load_async(key_hash)
    _entries[key_hash] = (now + settings.GATEWAY_KEY_CACHE_SECONDS, info)
    if len(_entries) > 100_000:
        _entries.clear()
    return info


def invalidate(key_hash: str) -> None:
    """Forget a key here and, through Redis, in every other process."""
    _entries.pop(key_hash, None)
    if redis_clients.redis_enabled():
        try:
            redis_clients.sync_client().publish(_channel(), key_hash)
        except Exception:  # a missed message only delays the change by the cache TTL
            logger.warning("could not publish key invalidation", exc_info=True)


def invalidate_account(account_id: int) -> None:
    from .models import ApiKey

    for key_hash in ApiKey.objects.filter(account_id=account_id).values_list("hash", flat=True):
        invalidate(key_hash)


def clear() -> None:
    _entries.clear()


def _channel() -> str:
    return f"{settings.COUNTER_PREFIX}:{INVALIDATE_CHANNEL}"


def _ensure_listener() -> None:
    global _listener_started
    if _listener_started:
        return
    _listener_started = True
    asyncio.get_running_loop().create_task(_listen())


async def _listen() -> None:
    while True:
        try:
            pubsub = redis_clients.async_client().pubsub()
            await pubsub.subscribe(_channel())
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message["data"]
                    _entries.pop(data.decode() if isinstance(data, bytes) else data, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("key invalidation listener failed; retrying", exc_info=True)
            _entries.clear()
            await asyncio.sleep(1)
