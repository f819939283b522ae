"""A per-process cache for the hot path, invalidated at once across processes.

``get(key)`` costs a dict access when cached; a miss runs the loader in a worker
thread (never on the event loop), once however many requests miss the same entry at
the same time (``single_flight``). ``invalidate(key)`` forgets the entry here and,
when Redis is configured, in every other process through a pub/sub message;
entries also expire after a TTL, so a missed message only delays a change.

A load that raced an invalidation is not cached (it may predate the change): each
invalidation bumps a per-key version, and ``clear()`` bumps an epoch. Loads are shared
per (key, epoch, version), so a request that misses after an invalidation never joins
a load started before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import redis
from django.conf import settings

from . import redis_clients
from .db_threads import in_db_thread
from .single_flight import SingleFlight

logger = logging.getLogger("openrouter.process_cache")

K = TypeVar("K")
V = TypeVar("V")
LISTEN_POLL_SECONDS = 1.0
# Who sent an invalidation: a process skips its own (it already forgot the key, and a late echo
# would drop an entry loaded after the change). Messages without it are honoured (any sender).
_origin: tuple[int, str] = (0, "")


def origin() -> str:
    """This process's name on invalidation messages (a new one after a fork)."""
    global _origin
    if _origin[0] != os.getpid():
        _origin = (os.getpid(), f"{os.getpid()}:{secrets.token_hex(4)}")
    return _origin[1]
MAX_ENTRIES = 100_000


class InvalidatingCache(Generic[K, V]):
    def __init__(
        self,
        *,
        name: str,
        load: Callable[[K], V],
        ttl: Callable[[], float],
        parse_key: Callable[[str], K],
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.parse_key = parse_key
        self.entries: dict[K, tuple[float, V]] = {}
        self.versions: dict[K, int] = {}
        self.epoch = 0
        self.listener: asyncio.Task | None = None
        self.load = load  # looked up at each miss (tests wrap it to count or to pause loads)
        self.load_async = in_db_thread(lambda key: self.load(key))
        self.flights: SingleFlight[tuple, V] = SingleFlight(name)

    async def get(self, key: K) -> V:
        entry = self.entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        if redis_clients.redis_enabled():
            self._ensure_listener()
        seen = (self.epoch, self.versions.get(key, 0))
        # Concurrent misses share one load; a miss after an invalidation (a new version) starts its own.
        return await self.flights.run((key, *seen), lambda: self._load(key, seen))

    async def _load(self, key: K, seen: tuple[int, int]) -> V:
        started = time.monotonic()
        value = await self.load_async(key)
        if (self.epoch, self.versions.get(key, 0)) == seen:
            if len(self.entries) >= MAX_ENTRIES:
                self.clear()
            self.entries[key] = (started + self.ttl(), value)
        return value

    def forget(self, key: K) -> None:
        self.entries.pop(key, None)
        self.versions[key] = self.versions.get(key, 0) + 1

    def invalidate(self, key: K) -> None:
        """Forget ``key`` here and, through Redis, in every other process."""
        self.forget(key)
        if redis_clients.redis_enabled():
            try:
                redis_clients.sync_client().publish(self.channel(), f"{key} {origin()}")
            except Exception:  # a missed message only delays the change by the TTL
                logger.warning("could not publish a %s invalidation", self.name, exc_info=True)

    def clear(self) -> None:
        self.entries.clear()
        self.versions.clear()
        self.epoch += 1

    def channel(self) -> str:
        # Pub/sub ignores Redis database numbers: name the database, so deployments (or test runs)
        # sharing one Redis server on different databases never invalidate each other's entries.
        database = redis.connection.parse_url(settings.REDIS_URL).get("db", 0) if settings.REDIS_URL else 0
        return f"{settings.COUNTER_PREFIX}:db{database}:{self.name}:invalidate"

    def _ensure_listener(self) -> None:
        """One listener per process, on the running loop (restarted if that loop changed)."""
        loop = asyncio.get_running_loop()
        if self.listener is not None and not self.listener.done() and self.listener.get_loop() is loop:
            return
        self.clear()  # messages may have been missed while no listener ran
        self.listener = loop.create_task(self._listen())

    async def _listen(self) -> None:
        # Polls instead of ``pubsub.listen()``: redis-py can swallow a cancellation inside a
        # blocking read, which would keep this task (and a closing event loop) alive for ever.
        task = asyncio.current_task()
        while True:
            pubsub = None
            try:
                pubsub = redis_clients.async_client().pubsub()
                await pubsub.subscribe(self.channel())
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_POLL_SECONDS)
                    if task.cancelling():
                        raise asyncio.CancelledError
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        text, _, sender = (data.decode() if isinstance(data, bytes) else data).partition(" ")
                        if sender == origin():
                            continue
                        try:
                            self.forget(self.parse_key(text))
                        except ValueError:
                            continue
            except asyncio.CancelledError:
                raise
            except Exception:
                if task.cancelling():
                    raise asyncio.CancelledError from None
                logger.warning("%s invalidation listener failed; retrying", self.name, exc_info=True)
                self.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                await asyncio.sleep(1)
