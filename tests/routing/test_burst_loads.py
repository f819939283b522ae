"""A burst from a key the process has not seen yet (issue 13): through the live gateway, 200 parallel
streams share one load of each per-process cache entry (the key, the catalog, the account's BYOK keys,
its balance and its key's limit window), and an invalidation during a load is still honoured."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from accounts import byok_cache, keycache
from accounts.services import api_key_update
from billing import counters
from routing import catalog_cache
from tests.factories import make_key
from tests.routing.gateway_helpers import stream

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"
BURST = 200


def counting(loader, calls: list, pause: float):
    """``loader`` that records each call and takes ``pause`` seconds longer, so the whole burst
    arrives while the first load still runs (in a worker thread, as the gateway runs it)."""

    def load(key):
        calls.append(key)
        time.sleep(pause)
        return loader(key)

    return load


async def burst(url: str, headers: dict, n: int) -> list[tuple[int, bool]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}

    async def one(session: aiohttp.ClientSession) -> tuple[int, bool]:
        async with session.post(url, json=body, headers=headers) as response:
            text = await response.read()
            return response.status, b"data: [DONE]" in text

    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # one connection per request
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        return await asyncio.gather(*(one(session) for _ in range(n)))


def test_a_burst_from_an_unseen_key_loads_each_cache_entry_once(gateway, monkeypatch):
    bundle = make_key(credits="10", limit="5", limit_reset="monthly")
    key_calls: list = []
    byok_calls: list = []
    monkeypatch.setattr(keycache.cache, "load", counting(keycache.cache.load, key_calls, 1.0))
    monkeypatch.setattr(byok_cache.cache, "load", counting(byok_cache.cache.load, byok_calls, 0.3))
    before = {
        "catalog": catalog_cache.builds.loads,
        "balance": counters.balance_loads.loads,
        "key window": counters.key_spent_loads.loads,
    }

    results = asyncio.run(burst(f"{gateway.api}/chat/completions", bundle.headers, BURST))

    assert results == [(200, True)] * BURST
    assert key_calls == [bundle.key.hash]
    assert byok_calls == [bundle.account.id]
    after = {
        "catalog": catalog_cache.builds.loads,
        "balance": counters.balance_loads.loads,
        "key window": counters.key_spent_loads.loads,
    }
    assert {name: after[name] - before[name] for name in before} == {"catalog": 1, "balance": 1, "key window": 1}


def test_a_key_disabled_while_it_loads_is_refused(gateway, monkeypatch):
    bundle = make_key()
    entered, release = threading.Event(), threading.Event()
    loaded: list = []
    original = keycache.cache.load

    def paused(key_hash):
        info = original(key_hash)  # read before the change below: the key is enabled
        loaded.append(info)
        if len(loaded) == 1:
            entered.set()
            assert release.wait(20)
        return info

    monkeypatch.setattr(keycache.cache, "load", paused)
    body = {"model": MODEL, "max_tokens": 5}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(stream, gateway, bundle, body)
        assert entered.wait(20)
        api_key_update(api_key=bundle.key, disabled=True)  # invalidates the cached key on commit
        # Asked after the change while the old load still runs: it must not wait for (and get) that load.
        during = pool.submit(stream, gateway, bundle, body)
        try:
            during_response, _ = during.result(timeout=20)
        finally:
            release.set()
        first_response, first_events = first.result(timeout=20)

    after_response, _ = stream(gateway, bundle, body)
    assert first_response.status_code == 200 and first_events[-1] == "[DONE]"  # it asked before the change
    assert during_response.status_code == 401
    assert during_response.json()["error"]["message"] == "This API key is disabled"
    # The stale load finished last but was not cached: the next request still sees the key disabled.
    assert after_response.status_code == 401
    assert loaded[0].disabled is False and all(info.disabled for info in loaded[1:])
