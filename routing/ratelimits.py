"""Free-model request limits: 20 a minute, and 50 a UTC day (1000 once $10 was ever bought).

Every request to a free model is counted when it is admitted, before any provider
is tried, so failed requests count too (as on OpenRouter). A refused request is
not counted. Both windows are fixed: the minute is the epoch minute, the day the
UTC calendar day, and each is keyed by account, so extra keys do not raise the
limit.

Two stores implement this, as for the credit counters: Redis (one Lua script
checks both windows and increments both, atomically, shared by every process)
when ``REDIS_URL`` is set, else an in-process store.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from billing.money import NANOS_PER_USD
from openrouter_site import redis_clients
from openrouter_site.errors import RateLimited

FREE_MODEL_PER_MINUTE = 20
FREE_MODEL_PER_DAY = 50
FREE_MODEL_PER_DAY_PAID = 1000
FREE_MODEL_PAID_THRESHOLD = 10 * NANOS_PER_USD  # lifetime purchases, nano-dollars
MINUTE_MS = 60_000
DAY_MS = 86_400_000

Window = Literal["minute", "day"]


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch_ms: int
    window: Window  # the window that refused, or (when allowed) the one closer to its limit


def is_free_variant(slug: str) -> bool:
    """Whether requests for ``slug`` count against the free-model limits (``:free`` variants)."""
    return slug.endswith(":free")


def free_daily_limit(purchased_nanos: int) -> int:
    return FREE_MODEL_PER_DAY_PAID if purchased_nanos >= FREE_MODEL_PAID_THRESHOLD else FREE_MODEL_PER_DAY


def _windows(now_ms: int) -> tuple[int, int]:
    """(epoch minute, epoch day) of ``now_ms``; UTC days are whole multiples of 86,400 s."""
    return now_ms // MINUTE_MS, now_ms // DAY_MS


def _decide(allowed: bool, minute_count: int, day_count: int, day_limit: int, now_ms: int) -> RateDecision:
    minute, day = _windows(now_ms)
    minute_left = max(FREE_MODEL_PER_MINUTE - minute_count, 0)
    day_left = max(day_limit - day_count, 0)
    day_reset = (day + 1) * DAY_MS
    minute_reset = (minute + 1) * MINUTE_MS
    # The day wins a tie: when both are exhausted, waiting a minute does not help.
    if day_left <= minute_left:
        return RateDecision(allowed, day_limit, day_left, day_reset, "day")
    return RateDecision(allowed, FREE_MODEL_PER_MINUTE, minute_left, minute_reset, "minute")


# --- Redis store ---------------------------------------------------------------------------

# KEYS: minute counter, day counter ; ARGV: minute limit, day limit, minute ttl, day ttl
# Returns {admitted, minute count, day count}; counts are after the increment when admitted.
_HIT_LUA = """
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
if m >= tonumber(ARGV[1]) or d >= tonumber(ARGV[2]) then return {0, m, d} end
m = redis.call('INCR', KEYS[1])
if m == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
d = redis.call('INCR', KEYS[2])
if d == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {1, m, d}
"""


class RedisRateLimits:
    def __init__(self) -> None:
        self.prefix = f"{settings.COUNTER_PREFIX}:rl:free"

    async def hit(self, *, account_id: int, day_limit: int, now_ms: int) -> tuple[bool, int, int]:
        minute, day = _windows(now_ms)
        keys = [f"{self.prefix}:{account_id}:m:{minute}", f"{self.prefix}:{account_id}:d:{day}"]
        admitted, minute_count, day_count = await redis_clients.script_client().evalsha(
            _HIT_LUA, keys, [FREE_MODEL_PER_MINUTE, day_limit, 120, 2 * 86_400]
        )
        return bool(admitted), int(minute_count), int(day_count)

    def reset(self) -> None:
        client = redis_clients.sync_client()
        for name in client.scan_iter(f"{self.prefix}:*"):
            client.delete(name)


# --- In-process store ------------------------------------------------------------------------


class LocalRateLimits:
    """Per account: (epoch minute, count in it, epoch day, count in it). Old windows are overwritten."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, tuple[int, int, int, int]] = {}

    async def hit(self, *, account_id: int, day_limit: int, now_ms: int) -> tuple[bool, int, int]:
        minute, day = _windows(now_ms)
        with self._lock:
            m_window, m_count, d_window, d_count = self._counts.get(account_id, (minute, 0, day, 0))
            if m_window != minute:
                m_window, m_count = minute, 0
            if d_window != day:
                d_window, d_count = day, 0
            if m_count >= FREE_MODEL_PER_MINUTE or d_count >= day_limit:
                return False, m_count, d_count
            self._counts[account_id] = (m_window, m_count + 1, d_window, d_count + 1)
            return True, m_count + 1, d_count + 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


_store: RedisRateLimits | LocalRateLimits | None = None


def rate_limits() -> RedisRateLimits | LocalRateLimits:
    global _store
    if _store is None:
        _store = RedisRateLimits() if redis_clients.redis_enabled() else LocalRateLimits()
    return _store


async def free_model_check(*, account_id: int, purchased_nanos: int, now: float | None = None) -> RateDecision:
    """Count one free-model request for ``account_id`` if both windows have room.

    ``now`` (epoch seconds) is for tests; the clock is ``time.time()`` otherwise.
    """
    now_ms = int((time.time() if now is None else now) * 1000)
    day_limit = free_daily_limit(purchased_nanos)
    admitted, minute_count, day_count = await rate_limits().hit(
        account_id=account_id, day_limit=day_limit, now_ms=now_ms
    )
    return _decide(admitted, minute_count, day_count, day_limit, now_ms)


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """The three ``X-RateLimit-*`` headers, as OpenRouter sends them (reset in epoch milliseconds)."""
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_epoch_ms),
    }


def free_model_rate_limited(decision: RateDecision, *, now: float | None = None) -> RateLimited:
    """OpenRouter's 429 for a refused free-model request: message, ``metadata.headers`` and real headers."""
    if decision.window == "minute":
        message = "Rate limit exceeded: free-models-per-min."
    elif decision.limit < FREE_MODEL_PER_DAY_PAID:
        message = (
            f"Rate limit exceeded: free-models-per-day. "
            f"Add 10 credits to unlock {FREE_MODEL_PER_DAY_PAID} free model requests per day"
        )
    else:
        # What OpenRouter says once the higher limit is spent too: buying more does not help.
        message = "Rate limit exceeded: free-models-per-day-high-balance."
    headers = rate_limit_headers(decision)
    now_ms = int((time.time() if now is None else now) * 1000)
    retry_after = max(math.ceil((decision.reset_epoch_ms - now_ms) / 1000), 1)
    return RateLimited(message, metadata={"headers": dict(headers)}, headers={**headers, "Retry-After": str(retry_after)})
