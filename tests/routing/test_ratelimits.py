"""Free-model rate limits (routing.ratelimits): windows, the $10 threshold, the 429.

Runs against the in-process store, and against Redis too when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest

from openrouter_site.errors import RateLimited
from routing import ratelimits
from routing.ratelimits import (
    FREE_MODEL_PAID_THRESHOLD,
    LocalRateLimits,
    RateDecision,
    free_model_check,
    free_model_rate_limited,
)

# 2025-03-04 10:00:00 UTC: a minute and a day boundary both well away.
T0 = dt.datetime(2025, 3, 4, 10, 0, 0, tzinfo=dt.UTC).timestamp()
NEXT_MINUTE_MS = int(T0 * 1000) + 60_000
NEXT_DAY_MS = int(dt.datetime(2025, 3, 5, tzinfo=dt.UTC).timestamp() * 1000)

STORES = ["local"]
if os.environ.get("REDIS_URL"):
    STORES.append("redis")


@pytest.fixture(params=STORES)
def store(request, settings, monkeypatch):
    if request.param == "redis":
        settings.REDIS_URL = os.environ["REDIS_URL"]
        settings.COUNTER_PREFIX = "test-rl"
        chosen = ratelimits.RedisRateLimits()
    else:
        chosen = LocalRateLimits()
    monkeypatch.setattr(ratelimits, "_store", chosen)
    chosen.reset()
    yield chosen
    chosen.reset()


def check(account_id: int, now: float, purchased: int = 0) -> RateDecision:
    return asyncio.run(free_model_check(account_id=account_id, purchased_nanos=purchased, now=now))


def burst(account_id: int, count: int, now: float, purchased: int = 0) -> list[RateDecision]:
    async def run():
        return [
            await free_model_check(account_id=account_id, purchased_nanos=purchased, now=now) for _ in range(count)
        ]

    return asyncio.run(run())


def test_twenty_a_minute_then_429_until_the_next_minute(store):
    decisions = burst(1, 20, T0 + 5)
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions][:3] == [19, 18, 17]
    assert decisions[-1] == RateDecision(True, 20, 0, NEXT_MINUTE_MS, "minute")

    refused = check(1, T0 + 59.9)
    assert refused == RateDecision(False, 20, 0, NEXT_MINUTE_MS, "minute")

    again = check(1, T0 + 60)
    assert again == RateDecision(True, 20, 19, NEXT_MINUTE_MS + 60_000, "minute")
    # Later in the day, the day is the tighter window: it is the one reported.
    for minute in range(2, 4):
        burst(1, 10, T0 + minute * 60)
    assert check(1, T0 + 240) == RateDecision(True, 50, 50 - 42, NEXT_DAY_MS, "day")


def test_a_refused_request_is_not_counted(store):
    burst(1, 20, T0)
    for _ in range(5):
        assert not check(1, T0 + 1).allowed
    burst(1, 20, T0 + 60)
    assert [d.allowed for d in burst(1, 11, T0 + 120)] == [True] * 10 + [False]


def test_fifty_a_day_without_purchases(store):
    allowed = 0
    for minute in range(3):  # 20 + 20 + 10 spread over three minutes
        for decision in burst(7, 20, T0 + minute * 60):
            allowed += decision.allowed
    assert allowed == 50
    refused = check(7, T0 + 3600)
    assert refused == RateDecision(False, 50, 0, NEXT_DAY_MS, "day")
    # A new UTC day starts from zero.
    assert check(7, NEXT_DAY_MS / 1000).allowed


def test_ten_dollars_of_purchases_unlock_a_thousand_a_day(store):
    below = FREE_MODEL_PAID_THRESHOLD - 1
    for minute in range(3):
        burst(3, 20, T0 + minute * 60, purchased=below)
    assert not check(3, T0 + 600, purchased=below).allowed
    # The same account after buying: the counts so far stand, the limit is now 1000.
    decision = check(3, T0 + 600, purchased=FREE_MODEL_PAID_THRESHOLD)
    assert decision.allowed
    assert decision.window == "minute" and decision.remaining == 19
    for minute in range(11, 58):  # 47 more full minutes: 50 + 1 + 940 = 991 so far
        burst(3, 20, T0 + minute * 60, purchased=FREE_MODEL_PAID_THRESHOLD)
    last = burst(3, 10, T0 + 3600, purchased=FREE_MODEL_PAID_THRESHOLD)
    assert [d.allowed for d in last] == [True] * 9 + [False]
    assert last[-2] == RateDecision(True, 1000, 0, NEXT_DAY_MS, "day")
    assert last[-1] == RateDecision(False, 1000, 0, NEXT_DAY_MS, "day")


def test_accounts_are_counted_apart(store):
    burst(1, 20, T0)
    assert not check(1, T0).allowed
    assert check(2, T0).allowed


def test_concurrent_requests_never_exceed_the_minute(store):
    async def run():
        return await asyncio.gather(
            *(free_model_check(account_id=9, purchased_nanos=0, now=T0) for _ in range(60))
        )

    decisions = asyncio.run(run())
    assert sum(d.allowed for d in decisions) == 20


def test_the_429_for_the_day_limit():
    decision = RateDecision(False, 50, 0, NEXT_DAY_MS, "day")
    error = free_model_rate_limited(decision, now=T0)
    assert isinstance(error, RateLimited)
    assert error.status == 429
    assert error.body() == {
        "error": {
            "code": 429,
            "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
            "metadata": {
                "headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(NEXT_DAY_MS)}
            },
        }
    }
    assert error.headers == {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(NEXT_DAY_MS),
        "Retry-After": str(14 * 3600),
    }


def test_the_429_for_the_minute_and_for_the_high_limit():
    minute = free_model_rate_limited(RateDecision(False, 20, 0, NEXT_MINUTE_MS, "minute"), now=T0 + 59.5)
    assert minute.message == "Rate limit exceeded: free-models-per-min."
    assert minute.headers["Retry-After"] == "1"
    assert minute.body()["error"]["metadata"]["headers"]["X-RateLimit-Limit"] == "20"
    high = free_model_rate_limited(RateDecision(False, 1000, 0, NEXT_DAY_MS, "day"), now=T0)
    assert high.message == "Rate limit exceeded: free-models-per-day-high-balance."


def test_the_real_clock_is_used_by_default(store):
    decision = asyncio.run(free_model_check(account_id=5, purchased_nanos=0))
    assert decision.allowed
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    assert now_ms < decision.reset_epoch_ms <= now_ms + 60_000


def test_free_variants_are_recognised():
    assert ratelimits.is_free_variant("deepseek/deepseek-r1:free")
    assert not ratelimits.is_free_variant("deepseek/deepseek-r1")
