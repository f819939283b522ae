"""Abandoned streams do not stay in memory: a soak-found leak, proved through the live server.

When a client leaves mid-stream the gateway closes the upstream response and the reading
coroutine gets an error. With aiohttp that was one shared module-level ``ClientConnectionError``
whose traceback grew by each abandoned request's frames, so every abandoned stream (its
responder, call state, body, stream state) stayed reachable for the life of the process:
``bench/soak.py`` grew each worker ~130 MB an hour. The provider client now raises a new
``ConnectionDropped`` per read; this test keeps any such path from coming back.
"""

from __future__ import annotations

import gc
import time

import httpx
import pytest

from billing.settlement import settlement_flush
from routing.gateway.responders import SseResponder
from tests.factories import make_key
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

ABANDONED = 8


def live_responders() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, SseResponder))


def test_abandoned_streams_leave_nothing_behind(gateway, simulator):
    slug, endpoints = multi_provider_model()
    provider = endpoints[0].provider.slug
    simulator.set(provider, tokens_per_second=40, completion_tokens=200)
    bundle = make_key(credits="5")
    before = live_responders()
    for _ in range(ABANDONED):
        with httpx.stream(
            "POST",
            f"{gateway.api}/chat/completions",
            json={
                "model": slug,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
                "provider": {"sort": "price"},
            },
            headers=bundle.headers,
            timeout=30,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    break  # the first content arrived: leave
    simulator.wait_for_stats(provider, lambda s: s["cancelled"] == ABANDONED, timeout=20)
    settlement_flush()
    deadline = time.monotonic() + 10
    while (left := live_responders() - before) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server's last cancelled request may still be settling
    assert left <= 0, f"{left} of {ABANDONED} abandoned streams are still in memory"
