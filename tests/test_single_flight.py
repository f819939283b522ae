"""openrouter_site.single_flight: concurrent misses share one load, and one failure; nothing is kept."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from openrouter_site.single_flight import SingleFlight


def test_concurrent_calls_for_one_key_share_one_load_and_other_keys_load_their_own():
    flights: SingleFlight[str, str] = SingleFlight("test")
    started: list[str] = []

    async def load(key: str) -> str:
        started.append(key)
        await asyncio.sleep(0.05)
        return f"value of {key}"

    async def main():
        return await asyncio.gather(
            *(flights.run("a", lambda: load("a")) for _ in range(100)),
            *(flights.run("b", lambda: load("b")) for _ in range(10)),
        )

    results = asyncio.run(main())
    assert results == ["value of a"] * 100 + ["value of b"] * 10
    assert sorted(started) == ["a", "b"]
    assert flights.loads == 2
    assert flights.in_flight() == 0


def test_a_failed_load_fails_every_waiter_and_is_not_kept():
    flights: SingleFlight[str, int] = SingleFlight("test")
    attempts = 0

    async def load() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.05)
        if attempts == 1:
            raise ConnectionError("database went away")
        return 42

    async def main():
        first = await asyncio.gather(*(flights.run("k", load) for _ in range(20)), return_exceptions=True)
        second = await asyncio.gather(*(flights.run("k", load) for _ in range(20)))
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, ConnectionError) for r in first) and len(first) == 20
    assert second == [42] * 20  # the next miss loads again
    assert attempts == 2


def test_a_cancelled_waiter_does_not_cancel_the_load_the_others_wait_for():
    flights: SingleFlight[str, str] = SingleFlight("test")
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "loaded"

    async def main():
        leader = asyncio.ensure_future(flights.run("k", load))  # its caller (a request) goes away
        others = [asyncio.ensure_future(flights.run("k", load)) for _ in range(5)]
        await asyncio.sleep(0.01)
        leader.cancel()
        await asyncio.sleep(0.01)
        release.set()
        return leader, await asyncio.gather(*others)

    leader, results = asyncio.run(main())
    assert leader.cancelled()
    assert results == ["loaded"] * 5
    assert flights.loads == 1


def test_threads_and_event_loops_share_one_load():
    """Sync callers in threads and async callers on their own loops in other threads join one flight."""
    flights: SingleFlight[str, str] = SingleFlight("test")
    calls = 0
    entered, release = threading.Event(), threading.Event()

    def load() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        assert release.wait(10)
        return "shared"

    async def load_async() -> str:
        return await asyncio.to_thread(load)

    def sync_caller() -> str:
        return flights.run_sync("k", load)

    def async_caller() -> str:
        return asyncio.run(flights.run("k", load_async))

    with ThreadPoolExecutor(12) as pool:
        leader = pool.submit(sync_caller)
        assert entered.wait(10)
        waiters = [pool.submit(sync_caller) for _ in range(5)] + [pool.submit(async_caller) for _ in range(5)]
        while not all(w.running() for w in waiters):
            time.sleep(0.01)
        time.sleep(0.3)  # they are inside run() / run_sync(), waiting on the leader's flight
        release.set()
        results = [leader.result(10)] + [w.result(10) for w in waiters]
    assert results == ["shared"] * 11
    assert calls == 1 and flights.loads == 1


def test_run_sync_failure_reaches_the_waiters_and_the_next_call_loads_again():
    flights: SingleFlight[str, int] = SingleFlight("test")
    entered, release = threading.Event(), threading.Event()
    calls = 0

    def failing() -> int:
        nonlocal calls
        calls += 1
        entered.set()
        assert release.wait(10)
        raise ValueError("no such row")

    with ThreadPoolExecutor(4) as pool:
        leader = pool.submit(flights.run_sync, "k", failing)
        assert entered.wait(10)
        waiter = pool.submit(flights.run_sync, "k", failing)
        while not waiter.running():
            time.sleep(0.01)
        time.sleep(0.3)
        release.set()
        with pytest.raises(ValueError):
            leader.result(10)
        with pytest.raises(ValueError):
            waiter.result(10)
    assert calls == 1  # the waiter got the leader's error
    assert flights.run_sync("k", lambda: 7) == 7


def test_a_load_whose_event_loop_was_closed_does_not_block_its_key():
    flights: SingleFlight[str, int] = SingleFlight("test")

    async def load() -> int:
        return 1

    loop = asyncio.new_event_loop()
    loop.create_task(flights.run("k", load))
    loop.call_soon(loop.stop)
    loop.run_forever()  # one turn: the load task exists but never runs
    loop.close()
    assert flights.in_flight() == 1
    assert asyncio.run(flights.run("k", load)) == 1  # a new load, not a wait for ever
    assert flights.loads == 2


def test_a_caller_that_found_the_entry_missing_before_a_load_landed_looks_again_instead_of_loading():
    flights: SingleFlight[str, int] = SingleFlight("test")
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return 5

    async def main():
        mark = flights.mark()  # the caller looks in its store: missing
        first = await flights.run("k", load)  # meanwhile another request loaded it
        late = await flights.run("k", load, since=mark)  # the caller comes to load: look again instead
        fresh = await flights.run("k", load, since=flights.mark())
        return first, late, fresh

    assert asyncio.run(main()) == (5, None, 5)
    assert calls == 2
