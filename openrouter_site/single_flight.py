"""Single-flight loads: concurrent misses for the same entry share one load.

A burst of requests for something not cached yet (a new API key, its account's balance,
its BYOK keys, the catalog after an invalidation) would otherwise run one database read
per request through the small worker-thread pool, and the last of them would wait
seconds. With ``flights.run(key, load)`` the first caller starts ``load()`` and every
caller that arrives while it runs waits for that same load and gets its result, or its
exception.

Nothing is remembered once a load has finished: a failed load is not cached (every
waiter gets the error, the next call loads again), and storing a result is the
caller's business. A cache that invalidates entries should put the entry's version in
``key``, so that a call made after an invalidation starts a fresh load instead of
joining one that may predate the change (see ``process_cache.InvalidatingCache``).

Safe across threads and event loops: a flight is a ``concurrent.futures.Future``
registered under a lock. ``run`` (async) runs the load as a task of the caller's loop,
so a waiter that is cancelled (its client went away) does not cancel the load the
others wait for. ``run_sync`` is the same for synchronous callers; it blocks its
thread while another caller's load runs, so never call it on an event loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

RECENT_KEYS = 10_000  # keys whose latest landing is remembered (for ``run(since=...)``)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadCancelled(RuntimeError):
    """The shared load was cancelled (its event loop shut down) before it finished."""


class _Flight:
    """One load in progress: its outcome, and one asyncio view of it per event loop that waits."""

    __slots__ = ("future", "views", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.future: Future = Future()
        self.loop = loop  # where the load runs (None: in a thread of a sync caller)
        # One view per loop: 500 waiters on one loop are woken by one thread-safe call, not 500.
        self.views: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}


class SingleFlight(Generic[K, V]):
    def __init__(self, name: str) -> None:
        self.name = name
        self.loads = 0  # loads started, each shared by every caller that asked while it ran
        self._lock = threading.Lock()
        self._flights: dict[K, _Flight] = {}
        self._landings = 0  # loads finished so far (see ``mark``)
        self._landed_at: dict[K, int] = {}  # key -> its latest landing, for the most recent keys

    def mark(self) -> int:
        """Taken before looking in a store that a load fills: pass it to ``run`` as ``since``."""
        return self._landings

    def in_flight(self) -> int:
        """How many loads are running now."""
        return len(self._flights)

    async def run(self, key: K, load: Callable[[], Awaitable[V]], *, since: int | None = None) -> V | None:
        """``await load()``, or the result of the load of ``key`` already running.

        With ``since`` (a ``mark()`` taken before the caller found the entry missing): None, and no
        load, when a load of ``key`` finished after that mark; the caller should look again.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if since is not None and key not in self._flights and self._landed_at.get(key, -1) > since:
                return None
        flight, leader = self._join(key, loop)
        with self._lock:
            view = flight.views.get(loop)
            if view is None:
                view = flight.views[loop] = asyncio.wrap_future(flight.future, loop=loop)
        if leader:
            task = loop.create_task(load())
            task.add_done_callback(lambda done: self._land_task(key, flight, done))
        # shield: cancelling this waiter must not cancel the flight the others share.
        return await asyncio.shield(view)

    def run_sync(self, key: K, load: Callable[[], V]) -> V:
        """``load()``, or the result of the load of ``key`` already running (blocks this thread)."""
        flight, leader = self._join(key, None)
        if not leader:
            return flight.future.result()
        try:
            value = load()
        except BaseException as exc:
            self._land(key, flight, error=exc)
            raise
        self._land(key, flight, value=value)
        return value

    def _join(self, key: K, loop: asyncio.AbstractEventLoop | None) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._flights.get(key)
            # A load whose loop was closed under it will never finish: start a new one.
            if flight is not None and not (flight.loop is not None and flight.loop.is_closed()):
                return flight, False
            flight = self._flights[key] = _Flight(loop)
            self.loads += 1
            return flight, True

    def _land_task(self, key: K, flight: _Flight, task: asyncio.Task) -> None:
        if task.cancelled():
            self._land(key, flight, error=LoadCancelled(f"{self.name} load of {key!r} was cancelled"))
        elif task.exception() is not None:
            self._land(key, flight, error=task.exception())
        else:
            self._land(key, flight, value=task.result())

    def _land(self, key: K, flight: _Flight, *, value=None, error: BaseException | None = None) -> None:
        # Unregistered before it resolves: a call from now on starts a new load (errors are not kept).
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            self._landings += 1
            self._landed_at.pop(key, None)
            self._landed_at[key] = self._landings
            if len(self._landed_at) > RECENT_KEYS:
                del self._landed_at[next(iter(self._landed_at))]  # the oldest
        if error is not None:
            flight.future.set_exception(error)
        else:
            flight.future.set_result(value)
