"""The hot path's view of an account's own provider keys (BYOK), cached in each process.

``provider_keys_for(account_id)`` costs a dict access when cached; a miss reads and
decrypts the account's usable keys in a worker thread. Any change to a key invalidates
the account's entry at once in this process and, when Redis is configured, in every other
process through a pub/sub message; entries also expire after ``GATEWAY_BYOK_CACHE_SECONDS``.
Same pattern as ``accounts.keycache``.

Per provider slug (``routing.Provider.slug``, as in the catalog's endpoints) the list is in
the order to try: prioritized keys by ``sort_order``, then fallback keys by ``sort_order``.
The gateway tries the prioritized keys, then OpenRouter's own capacity (skipped when a usable
key of the provider has ``always_use``), then the fallback keys. Disabled and deleted keys,
and keys that no longer decrypt (their encryption key was removed), are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings

from openrouter_site import redis_clients
from openrouter_site.db_threads import in_db_thread

logger = logging.getLogger("openrouter.byok_cache")

INVALIDATE_CHANNEL = "byok:invalidate"
LISTEN_POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ByokKey:
    id: str  # the credential's UUID, as the API shows it
    provider_slug: str
    secret: str = field(repr=False)  # the decrypted provider key: never log it
    always_use: bool  # no fallback to OpenRouter's shared capacity for this provider
    prioritized: bool  # tried before OpenRouter's capacity (else after it: a fallback key)
    sort_order: int = 0
    # Allowlists; None means no restriction.
    allowed_models: frozenset[str] | None = None
    allowed_api_key_hashes: frozenset[str] | None = None
    allowed_user_ids: frozenset[str] | None = None

    def allows(self, *, model: str, api_key_hash: str | None = None, user_id: str | None = None) -> bool:
        """Whether this credential may serve ``model`` for the calling key and user."""
        if self.allowed_models is not None and model not in self.allowed_models:
            return False
        if self.allowed_api_key_hashes is not None and api_key_hash not in self.allowed_api_key_hashes:
            return False
        if self.allowed_user_ids is not None and user_id not in self.allowed_user_ids:
            return False
        return True


ProviderKeys = dict[str, list[ByokKey]]

_entries: dict[int, tuple[float, ProviderKeys]] = {}
# Bumped by every invalidation, so a load that raced one is not cached (it may predate the change).
_versions: dict[int, int] = {}
_epoch = 0
_listener: asyncio.Task | None = None


def _frozen(values) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _load(account_id: int) -> ProviderKeys:
    from . import secrets
    from .models import ProviderKey

    rows = (
        ProviderKey.objects.filter(account_id=account_id, disabled=False, deleted_at__isnull=True)
        .select_related("provider")
        .order_by("provider__slug", "is_fallback", "sort_order", "created_at")
    )
    keys: ProviderKeys = {}
    for row in rows:
        try:
            secret = secrets.decrypt(row.encrypted_key)
        except secrets.InvalidToken:
            logger.warning("BYOK credential %s does not decrypt with the configured keys; skipped", row.id)
            continue
        keys.setdefault(row.provider.slug, []).append(
            ByokKey(
                id=str(row.id),
                provider_slug=row.provider.slug,
                secret=secret,
                always_use=row.always_use,
                prioritized=not row.is_fallback,
                sort_order=row.sort_order,
                allowed_models=_frozen(row.allowed_models),
                allowed_api_key_hashes=_frozen(row.allowed_api_key_hashes),
                allowed_user_ids=_frozen(row.allowed_user_ids),
            )
        )
    return keys


_load_async = in_db_thread(_load)


async def provider_keys_for(account_id: int) -> ProviderKeys:
    """The account's usable provider keys by provider slug, in the order to try (see module doc).

    The dict and lists are shared with other requests: do not mutate them.
    """
    entry = _entries.get(account_id)
    now = time.monotonic()
    if entry is not None and entry[0] > now:
        return entry[1]
    if redis_clients.redis_enabled():
        _ensure_listener()
    seen = (_epoch, _versions.get(account_id, 0))
    keys = await _load_async(account_id)
    if (_epoch, _versions.get(account_id, 0)) == seen:
        _entries[account_id] = (now + settings.GATEWAY_BYOK_CACHE_SECONDS, keys)
    if len(_entries) > 100_000:
        clear()
    return keys


def _forget(account_id: int) -> None:
    _entries.pop(account_id, None)
    _versions[account_id] = _versions.get(account_id, 0) + 1


def invalidate(account_id: int) -> None:
    """Forget an account's keys here and, through Redis, in every other process."""
    _forget(account_id)
    if redis_clients.redis_enabled():
        try:
            redis_clients.sync_client().publish(_channel(), str(account_id))
        except Exception:  # a missed message only delays the change by the cache TTL
            logger.warning("could not publish BYOK invalidation", exc_info=True)


def clear() -> None:
    global _epoch
    _entries.clear()
    _versions.clear()
    _epoch += 1


def _channel() -> str:
    return f"{settings.COUNTER_PREFIX}:{INVALIDATE_CHANNEL}"


def _ensure_listener() -> None:
    """One listener per process, on the running loop (restarted if that loop changed)."""
    global _listener
    loop = asyncio.get_running_loop()
    if _listener is not None and not _listener.done() and _listener.get_loop() is loop:
        return
    clear()  # messages may have been missed while no listener ran
    _listener = loop.create_task(_listen())


async def _listen() -> None:
    # Polls instead of ``pubsub.listen()``: redis-py can swallow a cancellation inside a
    # blocking read, which would keep this task (and a closing event loop) alive for ever.
    task = asyncio.current_task()
    while True:
        pubsub = None
        try:
            pubsub = redis_clients.async_client().pubsub()
            await pubsub.subscribe(_channel())
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_POLL_SECONDS)
                if task.cancelling():
                    raise asyncio.CancelledError
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    try:
                        _forget(int(data.decode() if isinstance(data, bytes) else data))
                    except ValueError:
                        continue
        except asyncio.CancelledError:
            raise
        except Exception:
            if task.cancelling():
                raise asyncio.CancelledError from None
            logger.warning("BYOK invalidation listener failed; retrying", exc_info=True)
            clear()
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(1)
