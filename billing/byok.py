"""BYOK: the fee on requests served with the account's own provider key, and their monthly count.

A BYOK request is billed by the provider to the user's key (``usage.is_byok``,
``cost_details.upstream_inference_cost``); OpenRouter charges only its fee, from credits:
nothing for the first ``BYOK_FREE_REQUESTS_PER_MONTH`` (1,000,000) BYOK requests of the
account in a UTC calendar month, then 5% of what the request would cost at the list price.

The count lives in Redis (one INCR per request, shared by every process) when
``REDIS_URL`` is set, else in this process. Either way a missing count (a new month, a
restarted process, an evicted key) starts from the month's BYOK generations in the
database, so the allowance is not handed out twice.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from decimal import Decimal

from django.conf import settings

from openrouter_site import redis_clients
from openrouter_site.db_threads import in_db_thread
from openrouter_site.single_flight import SingleFlight

from .money import percent_of

BYOK_FEE_PERCENT = Decimal(5)
COUNT_TTL_SECONDS = 40 * 86400  # a month's count outlives its month


def byok_fee(*, list_price_cost_nanos: int, requests_this_month: int) -> int:
    """OpenRouter's fee in nano-dollars for one BYOK request.

    ``requests_this_month`` is this request's number among the account's BYOK requests of
    the UTC month, counting itself (what ``byok_request_count_incr`` returns): requests
    1..allowance are free, the next ones pay 5% of ``list_price_cost_nanos`` (the request's
    cost at OpenRouter's price for the same model and provider), rounded half up.
    """
    if list_price_cost_nanos < 0:
        raise ValueError("a list price cost cannot be negative")
    if requests_this_month <= settings.BYOK_FREE_REQUESTS_PER_MONTH:
        return 0
    return percent_of(list_price_cost_nanos, BYOK_FEE_PERCENT)


def month_id(now: dt.datetime | None = None) -> str:
    """The UTC month a request falls in: '202611'."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y%m")


def _month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(int(month[:4]), int(month[4:]), 1, tzinfo=dt.UTC)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def _db_count(account_id: int, month: str) -> int:
    from activity.models import Generation

    start, end = _month_bounds(month)
    return Generation.objects.filter(
        account_id=account_id, is_byok=True, created_at__gte=start, created_at__lt=end
    ).count()


_db_count_async = in_db_thread(_db_count)
count_loads: SingleFlight[object, int | None] = SingleFlight("byok count")  # a burst shares one read


async def byok_request_count_incr(account_id: int, *, now: dt.datetime | None = None) -> int:
    """Count one more BYOK request for the account this UTC month; returns the new count."""
    month = month_id(now)
    if redis_clients.redis_enabled():
        return await _redis_incr(account_id, month)
    return await _local_incr(account_id, month)


def byok_request_count(account_id: int, *, now: dt.datetime | None = None) -> int:
    """The account's BYOK requests so far this UTC month (no increment; for display)."""
    month = month_id(now)
    if redis_clients.redis_enabled():
        raw = redis_clients.sync_client().get(_redis_key(account_id, month))
        return int(raw) if raw is not None else _db_count(account_id, month)
    with _lock:
        count = _local.get(month, {}).get(account_id)
    return count if count is not None else _db_count(account_id, month)


def byok_request_counts_reset() -> None:
    """Forget the in-process counts (tests; Redis counts go with the counter prefix)."""
    with _lock:
        _local.clear()


# --- Redis ---------------------------------------------------------------------------------

# KEYS: count ; returns the new count, or -1 when the count must first be loaded
_INCR_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('INCR', KEYS[1])
"""

_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _redis_key(account_id: int, month: str) -> str:
    return f"{settings.COUNTER_PREFIX}:byok:{account_id}:{month}"


async def _redis_incr(account_id: int, month: str) -> int:
    client = redis_clients.async_client()
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_INCR_LUA)
    key = _redis_key(account_id, month)
    for _ in range(3):
        count = int(await script(keys=[key]))
        if count >= 0:
            return count
        await count_loads.run(key, lambda: _redis_load(client, key, account_id, month))
    raise RuntimeError("BYOK request counter could not be loaded")


async def _redis_load(client, key: str, account_id: int, month: str) -> None:
    await client.set(key, await _db_count_async(account_id, month), nx=True, ex=COUNT_TTL_SECONDS)


# --- In-process ----------------------------------------------------------------------------

_lock = threading.Lock()
_local: dict[str, dict[int, int]] = {}  # month -> account id -> count


async def _local_incr(account_id: int, month: str) -> int:
    with _lock:
        counts = _local.get(month)
        if counts is not None and account_id in counts:
            counts[account_id] += 1
            return counts[account_id]
    loaded = await count_loads.run((account_id, month), lambda: _db_count_async(account_id, month))
    with _lock:
        if month not in _local:
            for old in sorted(_local)[:-1]:  # keep one other month (the one before) besides this
                del _local[old]
            _local[month] = {}
        counts = _local[month]
        counts[account_id] = counts.get(account_id, loaded) + 1
        return counts[account_id]
