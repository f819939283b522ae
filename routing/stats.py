"""Live per-endpoint statistics, measured from real traffic.

Three parts, so that the request path never waits:

- ``stats_record`` (hot path, O(1), no I/O): adds one attempt's outcome to this
  process's pending counters, keyed by 10-second bucket and endpoint.
- ``stats_flush`` (a background thread, every second): moves the pending counters
  to the shared store: Redis when ``REDIS_URL`` is set (one hash per 10-second
  bucket, ``HINCRBY`` through a Lua script, two-hour TTL), else an in-process twin.
- readers: ``health_snapshot()`` for routing (the last 5 minutes and 30 seconds,
  recomputed at most every ``HEALTH_REFRESH_SECONDS`` by the same background thread,
  and with Redis by one process for all of them) and ``endpoint_stats(ids)`` for the
  ``/models/{a}/{s}/endpoints`` page (5 minutes, 30 minutes, 1 day).

``stats_rollup`` (the Celery task ``routing.tasks.endpoint_stats_rollup``, every
minute; the background thread does it itself for the in-process store) sums
finished minutes of 10-second buckets into per-minute hashes and finished hours
into per-hour hashes (kept a bit over one and two days), so that a one-day read is
about 24 hour hashes, some minutes and a few 10-second buckets. Each level has a
watermark (the end of what was rolled up); a reader uses a coarser hash only where
the watermark says it is complete. Rolling up writes sums (never increments), so a
repeated or concurrent run changes nothing.

What is counted, per endpoint and bucket (a hash field ``"<endpoint id>:<slot>"``):

- outcomes: success, error, rate limited (429). ``uptime = success / (success +
  errors) * 100``; 429s are left out, as OpenRouter does. The request's own faults
  (400, 413, 422) say nothing about the endpoint and are not counted at all.
- first-token latency (ms) and throughput (tokens/s) of successful attempts, in
  fixed log-spaced histograms (each bucket 20 % wider than the one before), so that
  buckets from any number of processes add up; percentiles are interpolated inside
  a bucket. Throughput percentiles read from the slow end, as OpenRouter's do (its
  p90 throughput is below its p50): ``p90`` is the rate 90 % of requests reach.
- tool calls: of requests that offered tools, whether the answer held valid tool
  calls (the ``:exacto`` signal).

"Recently failing" (OpenRouter's "significant outages in the last 30 seconds"):
at least ``FAILING_MIN_FAILURES`` (2) failures, 429s included (a provider that
refuses most of our traffic is unavailable to us, whoever's fault it is), making up
at least ``FAILING_MIN_RATE`` (50 %) of the attempts in the last 30-40 seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from openrouter_site import redis_clients

logger = logging.getLogger("openrouter.stats")

BUCKET_SECONDS = 10
LEVEL_SECONDS = {"s": BUCKET_SECONDS, "m": 60, "h": 3600}
LEVEL_TTL = {"s": 2 * 3600, "m": 26 * 3600, "h": 50 * 3600}
ROLLUP_GRACE_SECONDS = 60  # a minute is rolled up this long after it ends (late flushes)
FLUSH_SECONDS = 1.0
HEALTH_REFRESH_SECONDS = 2.0
ENDPOINT_STATS_CACHE_SECONDS = 5.0
LOCAL_ROLLUP_SECONDS = 60.0

FAILING_WINDOW_SECONDS = 30
FAILING_MIN_FAILURES = 2
FAILING_MIN_RATE = 0.5
HEALTH_WINDOW_SECONDS = 300
UPTIME_WINDOWS = {"5m": 300, "30m": 1800, "1d": 86400}

# The request's own fault: not counted for or against the endpoint.
REQUEST_FAULT_STATUSES = frozenset({400, 413, 422})


def _edges(first: float, last: float, ratio: float = 1.2) -> tuple[float, ...]:
    count = math.ceil(math.log(last / first) / math.log(ratio))
    return tuple(first * ratio**i for i in range(count + 1))


LATENCY_EDGES = _edges(10.0, 300_000.0)  # first-token latency, ms
THROUGHPUT_EDGES = _edges(1.0, 20_000.0)  # tokens per second

# Slots of one endpoint's counters (a flat list of ints; also the hash field suffix).
OK, ERR, RATE_LIMITED, TOOL_OK, TOOL_BAD = range(5)
LAT0 = 5
TPS0 = LAT0 + len(LATENCY_EDGES) + 1
SLOTS = TPS0 + len(THROUGHPUT_EDGES) + 1
COUNT_SLOTS = (OK, ERR, RATE_LIMITED, TOOL_OK, TOOL_BAD)


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p75: float
    p90: float
    p99: float

    def as_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p75": self.p75, "p90": self.p90, "p99": self.p99}

    def get(self, name: str) -> float:
        return getattr(self, name)


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """What routing knows about an endpoint right now (5-minute window unless named)."""

    recently_failing: bool
    p50_latency_ms: float | None
    p50_throughput: float | None
    uptime_5m: float | None
    latency_ms: Percentiles | None = None
    throughput: Percentiles | None = None
    tool_call_success: float | None = None  # 0..1
    tool_call_requests: int = 0
    attempts_30s: int = 0
    failures_30s: int = 0


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """The ``PublicEndpoint`` measurements: uptimes in %, TTFT in ms, throughput in tokens/s."""

    uptime_5m: float | None
    uptime_30m: float | None
    uptime_1d: float | None
    latency_30m: Percentiles | None
    throughput_30m: Percentiles | None


# --- pure helpers ------------------------------------------------------------------------------


def _bucket_start(at: float, seconds: int = BUCKET_SECONDS) -> int:
    return int(at // seconds) * seconds


def _percentile_in(counts: list[int], offset: int, edges: tuple[float, ...], q: float) -> float:
    """The q-quantile of a histogram (slots ``offset .. offset+len(edges)``), linear inside a bucket."""
    size = len(edges) + 1
    total = sum(counts[offset : offset + size])
    rank = q * total
    seen = 0
    for index in range(size):
        count = counts[offset + index]
        if not count:
            continue
        if seen + count >= rank:
            low = 0.0 if index == 0 else edges[index - 1]
            if index == size - 1:
                return low  # the overflow bucket has no upper edge
            high = edges[index]
            return low + (high - low) * max(rank - seen, 0) / count
        seen += count
    return edges[-1]


def percentiles(counts: list[int], offset: int, edges: tuple[float, ...], *, slow_end_high: bool) -> Percentiles | None:
    """p50/p75/p90/p99 of one histogram, or None without samples.

    ``slow_end_high`` is True for latency (p99 = the slowest 1 %) and False for
    throughput, where p99 is the rate 99 % of requests reach (the 1st percentile).
    """
    if not any(counts[offset : offset + len(edges) + 1]):
        return None
    values = []
    for q in (0.5, 0.75, 0.9, 0.99):
        value = _percentile_in(counts, offset, edges, q if slow_end_high else 1 - q)
        values.append(round(value, 1))
    return Percentiles(*values)


def uptime(counts: list[int]) -> float | None:
    judged = counts[OK] + counts[ERR]
    if not judged:
        return None
    return round(counts[OK] * 100.0 / judged, 2)


def is_recently_failing(counts: list[int]) -> bool:
    failures = counts[ERR] + counts[RATE_LIMITED]
    attempts = failures + counts[OK]
    return failures >= FAILING_MIN_FAILURES and failures >= FAILING_MIN_RATE * attempts


def _health_from(window: list[int], recent: list[int] | None) -> EndpointHealth:
    recent = recent or [0] * len(COUNT_SLOTS)
    latency = percentiles(window, LAT0, LATENCY_EDGES, slow_end_high=True)
    throughput = percentiles(window, TPS0, THROUGHPUT_EDGES, slow_end_high=False)
    tool_requests = window[TOOL_OK] + window[TOOL_BAD]
    return EndpointHealth(
        recently_failing=is_recently_failing(recent),
        p50_latency_ms=latency.p50 if latency else None,
        p50_throughput=throughput.p50 if throughput else None,
        uptime_5m=uptime(window),
        latency_ms=latency,
        throughput=throughput,
        tool_call_success=round(window[TOOL_OK] / tool_requests, 4) if tool_requests else None,
        tool_call_requests=tool_requests,
        attempts_30s=recent[OK] + recent[ERR] + recent[RATE_LIMITED],
        failures_30s=recent[ERR] + recent[RATE_LIMITED],
    )


_FIELD_CACHE: dict[object, tuple[int, int]] = {}


def _parse_field(field: bytes | str) -> tuple[int, int]:
    parsed = _FIELD_CACHE.get(field)
    if parsed is None:
        eid, _, slot = field.partition(b":" if isinstance(field, bytes) else ":")
        parsed = (int(eid), int(slot))
        if len(_FIELD_CACHE) < 200_000:
            _FIELD_CACHE[field] = parsed
    return parsed


def _cover(start: int, end: int, marks: tuple[int, int], oldest_bucket: int) -> list[tuple[str, int]]:
    """The (level, start) hashes that cover [start, end): hours and minutes where rolled up, else buckets."""
    minute_mark, hour_mark = marks
    parts: list[tuple[str, int]] = []
    t = start
    while t < end:
        if t % 3600 == 0 and t + 3600 <= end and t + 3600 <= hour_mark:
            parts.append(("h", t))
            t += 3600
        elif t % 60 == 0 and t + 60 <= end and t + 60 <= minute_mark:
            parts.append(("m", t))
            t += 60
        else:
            if t >= oldest_bucket:  # older 10-second buckets have expired
                parts.append(("s", t))
            t += BUCKET_SECONDS
    return parts


# --- stores ------------------------------------------------------------------------------------

# KEYS[1]: hash ; ARGV[1]: ttl, then field, increment pairs
_ADD_LUA = """
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1]: watermark ; ARGV[1]: value. Watermarks only move forward.
_MARK_LUA = """
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisStatsStore:
    """Shared by every process: ``<prefix>:eps:<level>:<start>`` hashes, watermarks, the health blob."""

    def __init__(self, prefix: str, client=None) -> None:
        self.prefix = f"{prefix}:eps"
        self._client = client
        self._add = None
        self._mark = None

    @property
    def client(self):
        if self._client is None:
            self._client = redis_clients.sync_client()
        return self._client

    def key(self, level: str, start: int) -> str:
        return f"{self.prefix}:{level}:{start}"

    def add(self, batch: dict[str, dict[str, int]], ttl: int) -> None:
        if self._add is None:
            self._add = self.client.register_script(_ADD_LUA)
        pipe = self.client.pipeline(transaction=False)
        for key, fields in batch.items():
            args: list = [ttl]
            for field, value in fields.items():
                args += (field, value)
            self._add(keys=[key], args=args, client=pipe)
        pipe.execute()

    def read(self, keys: list[str]) -> list[dict]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()

    def read_fields(self, keys: list[str], fields: list[str]) -> list[list]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        return pipe.execute()

    def replace(self, items: list[tuple[str, dict, int]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for key, mapping, ttl in items:
            pipe.delete(key)
            if mapping:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, ttl)
        pipe.execute()

    def marks(self) -> tuple[int, int]:
        minute, hour = self.client.mget([f"{self.prefix}:rolled:m", f"{self.prefix}:rolled:h"])
        return int(minute or 0), int(hour or 0)

    def set_mark(self, level: str, value: int) -> None:
        if self._mark is None:
            self._mark = self.client.register_script(_MARK_LUA)
        self._mark(keys=[f"{self.prefix}:rolled:{level}"], args=[value])

    def blob_get(self, name: str) -> bytes | None:
        return self.client.get(f"{self.prefix}:blob:{name}")

    def blob_set(self, name: str, value: bytes, ttl: int) -> None:
        self.client.set(f"{self.prefix}:blob:{name}", value, ex=ttl)

    def try_lock(self, name: str, seconds: float) -> bool:
        return bool(self.client.set(f"{self.prefix}:lock:{name}", 1, nx=True, px=int(seconds * 1000)))

    def unlock(self, name: str) -> None:
        self.client.delete(f"{self.prefix}:lock:{name}")

    def reset(self) -> None:
        for name in self.client.scan_iter(f"{self.prefix}:*", count=1000):
            self.client.delete(name)


class LocalStatsStore:
    """The same operations on dicts, for one process without Redis."""

    def __init__(self, prefix: str = "local") -> None:
        self.prefix = f"{prefix}:eps"
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[dict[str, int], float]] = {}
        self._marks = {"m": 0, "h": 0}
        self._blobs: dict[str, tuple[bytes, float]] = {}
        self._pruned_at = 0.0

    def key(self, level: str, start: int) -> str:
        return f"{self.prefix}:{level}:{start}"

    def _live(self, key: str, now: float) -> dict[str, int] | None:
        entry = self._hashes.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def add(self, batch: dict[str, dict[str, int]], ttl: int) -> None:
        now = time.time()
        with self._lock:
            for key, fields in batch.items():
                current = self._live(key, now)
                if current is None:
                    current = {}
                for field, value in fields.items():
                    current[field] = current.get(field, 0) + value
                self._hashes[key] = (current, now + ttl)
            if now - self._pruned_at > 60:
                self._pruned_at = now
                for key in [k for k, (_, expires) in self._hashes.items() if expires <= now]:
                    del self._hashes[key]

    def read(self, keys: list[str]) -> list[dict]:
        now = time.time()
        with self._lock:
            return [dict(self._live(key, now) or {}) for key in keys]

    def read_fields(self, keys: list[str], fields: list[str]) -> list[list]:
        now = time.time()
        with self._lock:
            rows = []
            for key in keys:
                current = self._live(key, now) or {}
                rows.append([current.get(field) for field in fields])
            return rows

    def replace(self, items: list[tuple[str, dict, int]]) -> None:
        now = time.time()
        with self._lock:
            for key, mapping, ttl in items:
                self._hashes.pop(key, None)
                if mapping:
                    self._hashes[key] = (dict(mapping), now + ttl)

    def marks(self) -> tuple[int, int]:
        return self._marks["m"], self._marks["h"]

    def set_mark(self, level: str, value: int) -> None:
        with self._lock:
            self._marks[level] = max(self._marks[level], value)

    def blob_get(self, name: str) -> bytes | None:
        entry = self._blobs.get(name)
        return entry[0] if entry and entry[1] > time.time() else None

    def blob_set(self, name: str, value: bytes, ttl: int) -> None:
        self._blobs[name] = (value, time.time() + ttl)

    def try_lock(self, name: str, seconds: float) -> bool:
        return True

    def unlock(self, name: str) -> None:
        pass

    def reset(self) -> None:
        with self._lock:
            self._hashes.clear()
            self._blobs.clear()
            self._marks = {"m": 0, "h": 0}


# --- the engine --------------------------------------------------------------------------------


class StatsEngine:
    """Pending counters of this process, plus the flush, rollup and read logic over one store."""

    def __init__(self, store: RedisStatsStore | LocalStatsStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[tuple[int, int], list[int]] = {}
        self.health: dict[int, EndpointHealth] = {}
        self.health_at = 0.0
        self._blob_at: float | None = None
        self._stats_cache: dict[tuple[int, ...], tuple[float, dict[int, EndpointStats]]] = {}

    # hot path ----------------------------------------------------------------------------------

    def record(
        self,
        endpoint_id: int,
        *,
        ok: bool,
        status: int | None = None,
        ttft_ms: float | None = None,
        tokens_per_second: float | None = None,
        tool_calls: bool | None = None,
        at: float | None = None,
    ) -> None:
        if not ok and status in REQUEST_FAULT_STATUSES:
            return
        name = (int((time.time() if at is None else at) // BUCKET_SECONDS) * BUCKET_SECONDS, endpoint_id)
        with self._lock:
            counts = self._pending.get(name)
            if counts is None:
                counts = self._pending[name] = [0] * SLOTS
            if ok:
                counts[OK] += 1
                if ttft_ms is not None:
                    counts[LAT0 + bisect_right(LATENCY_EDGES, ttft_ms)] += 1
                if tokens_per_second is not None:
                    counts[TPS0 + bisect_right(THROUGHPUT_EDGES, tokens_per_second)] += 1
            elif status == 429:
                counts[RATE_LIMITED] += 1
            else:
                counts[ERR] += 1
            if tool_calls is not None:
                counts[TOOL_OK if tool_calls else TOOL_BAD] += 1

    # background --------------------------------------------------------------------------------

    def flush(self) -> int:
        """Push pending counters to the store; returns how many (bucket, endpoint) rows went."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            batch: dict[str, dict[str, int]] = {}
            for (start, endpoint_id), counts in pending.items():
                fields = batch.setdefault(self.store.key("s", start), {})
                for slot, value in enumerate(counts):
                    if value:
                        fields[f"{endpoint_id}:{slot}"] = value
            try:
                self.store.add(batch, LEVEL_TTL["s"])
            except Exception:
                self._restore(pending)
                raise
            return len(pending)

    def _restore(self, pending: dict[tuple[int, int], list[int]]) -> None:
        with self._lock:
            for name, counts in pending.items():
                current = self._pending.get(name)
                if current is None:
                    self._pending[name] = counts
                else:
                    for slot, value in enumerate(counts):
                        current[slot] += value

    def rollup(self, now: float | None = None) -> int:
        """Sum finished minutes into minute hashes and finished hours into hour hashes; returns how many."""
        now = time.time() if now is None else now
        minute_mark, hour_mark = self.store.marks()
        if not minute_mark:  # first run: older buckets have expired anyway
            minute_mark = _bucket_start(now - LEVEL_TTL["s"], 60)
            self.store.set_mark("m", minute_mark)
        if not hour_mark:
            hour_mark = _bucket_start(minute_mark, 3600)
            self.store.set_mark("h", hour_mark)
        limit = _bucket_start(now - ROLLUP_GRACE_SECONDS, 60)
        written = 0
        while minute_mark + 60 <= limit:
            minutes = list(range(minute_mark, min(limit, minute_mark + 30 * 60), 60))
            written += self._roll(minutes, "s", "m")
            minute_mark = minutes[-1] + 60
            self.store.set_mark("m", minute_mark)
        while hour_mark + 3600 <= minute_mark:
            written += self._roll([hour_mark], "m", "h")
            hour_mark += 3600
            self.store.set_mark("h", hour_mark)
        return written

    def _roll(self, targets: list[int], source: str, level: str) -> int:
        step = LEVEL_SECONDS[source]
        per_target = LEVEL_SECONDS[level] // step
        keys = [self.store.key(source, t + i * step) for t in targets for i in range(per_target)]
        hashes = self.store.read(keys)
        items = []
        for index, target in enumerate(targets):
            total: dict = {}
            for part in hashes[index * per_target : (index + 1) * per_target]:
                for field, value in part.items():
                    total[field] = total.get(field, 0) + int(value)
            items.append((self.store.key(level, target), total, LEVEL_TTL[level]))
        self.store.replace(items)
        return sum(1 for _, total, _ in items if total)

    # reads -------------------------------------------------------------------------------------

    def _window_keys(self, now: float, seconds: int, marks: tuple[int, int]) -> list[str]:
        end = _bucket_start(now) + BUCKET_SECONDS
        start = _bucket_start(now - seconds)
        oldest = _bucket_start(now - LEVEL_TTL["s"])
        return [self.store.key(level, t) for level, t in _cover(start, end, marks, oldest)]

    def _totals(self, hashes: Iterable[dict], only: set[int] | None = None) -> dict[int, list[int]]:
        totals: dict[int, list[int]] = {}
        for part in hashes:
            for field, value in part.items():
                endpoint_id, slot = _parse_field(field)
                if only is not None and endpoint_id not in only:
                    continue
                counts = totals.get(endpoint_id)
                if counts is None:
                    counts = totals[endpoint_id] = [0] * SLOTS
                counts[slot] += int(value)
        return totals

    def compute_health(self, now: float | None = None) -> dict[int, EndpointHealth]:
        """Every endpoint seen in the last 5 minutes, read from the store."""
        now = time.time() if now is None else now
        marks = self.store.marks()
        window_keys = self._window_keys(now, HEALTH_WINDOW_SECONDS, marks)
        recent_keys = self._window_keys(now, FAILING_WINDOW_SECONDS, marks)
        keys = list(dict.fromkeys(window_keys + recent_keys))
        by_key = dict(zip(keys, self.store.read(keys), strict=True))
        window = self._totals(by_key[k] for k in window_keys)
        recent = self._totals(by_key[k] for k in recent_keys)
        return {eid: _health_from(counts, recent.get(eid)) for eid, counts in window.items()}

    def refresh_health(self, now: float | None = None) -> dict[int, EndpointHealth]:
        """Publish a fresh health snapshot: computed here, or (with Redis) taken from the process
        that computed it in the last ``HEALTH_REFRESH_SECONDS``; one process computes per period."""
        now = time.time() if now is None else now
        raw = self.store.blob_get("health")
        blob = orjson.loads(raw) if raw is not None else None
        if blob is not None and 0 <= now - blob["at"] < HEALTH_REFRESH_SECONDS:
            health = self._decoded(blob)
        elif self.store.try_lock("health", HEALTH_REFRESH_SECONDS):
            try:
                health = self.compute_health(now)
                payload = {"at": now, "data": _health_encode(health)}
                self.store.blob_set("health", orjson.dumps(payload), int(HEALTH_REFRESH_SECONDS * 5))
                self._blob_at = now
            finally:
                self.store.unlock("health")
        elif blob is not None:
            health = self._decoded(blob)  # another process is computing a newer one
        else:
            health = self.compute_health(now)
        self.health = health
        self.health_at = time.monotonic()
        return health

    def _decoded(self, blob: dict) -> dict[int, EndpointHealth]:
        if blob["at"] == self._blob_at:
            return self.health
        self._blob_at = blob["at"]
        return _health_decode(blob["data"])

    def endpoint_stats(self, endpoint_ids: Iterable[int], now: float | None = None) -> dict[int, EndpointStats]:
        """Uptime over 5 min / 30 min / 1 day and 30-minute percentiles, for the given endpoints.

        Each window is summed over its own cover of hashes (a partition of the window); the
        5- and 30-minute hashes are read whole for these endpoints, the day's only for counts.
        Cached per process for ``ENDPOINT_STATS_CACHE_SECONDS``.
        """
        ids = tuple(sorted(set(endpoint_ids)))
        if not ids:
            return {}
        cached = self._stats_cache.get(ids) if now is None else None
        if cached is not None and time.monotonic() - cached[0] < ENDPOINT_STATS_CACHE_SECONDS:
            return cached[1]
        at = time.time() if now is None else now
        marks = self.store.marks()
        keys = {name: self._window_keys(at, seconds, marks) for name, seconds in UPTIME_WINDOWS.items()}
        full_fields = [f"{eid}:{slot}" for eid in ids for slot in range(SLOTS)]
        count_fields = [f"{eid}:{slot}" for eid in ids for slot in (OK, ERR)]
        full_keys = list(dict.fromkeys(keys["30m"] + keys["5m"]))
        rows = {k: (full_fields, r) for k, r in zip(full_keys, self.store.read_fields(full_keys, full_fields), strict=True)}
        day_keys = [k for k in keys["1d"] if k not in rows]
        rows.update(
            {k: (count_fields, r) for k, r in zip(day_keys, self.store.read_fields(day_keys, count_fields), strict=True)}
        )

        def totals(window: str) -> dict[int, list[int]]:
            return self._totals(
                {f: v for f, v in zip(*rows[k], strict=True) if v is not None} for k in keys[window]
            )

        five, half_hour, day = totals("5m"), totals("30m"), totals("1d")
        result = {}
        for eid in ids:
            window = half_hour.get(eid)
            result[eid] = EndpointStats(
                uptime_5m=uptime(five[eid]) if eid in five else None,
                uptime_30m=uptime(window) if window else None,
                uptime_1d=uptime(day[eid]) if eid in day else None,
                latency_30m=percentiles(window, LAT0, LATENCY_EDGES, slow_end_high=True) if window else None,
                throughput_30m=percentiles(window, TPS0, THROUGHPUT_EDGES, slow_end_high=False) if window else None,
            )
        if now is None:
            if len(self._stats_cache) > 1000:
                self._stats_cache.clear()
            self._stats_cache[ids] = (time.monotonic(), result)
        return result

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
        self.health = {}
        self.health_at = 0.0
        self._blob_at = None
        self._stats_cache.clear()
        self.store.reset()


def _health_encode(health: dict[int, EndpointHealth]) -> dict[str, list]:
    def pct(value: Percentiles | None):
        return None if value is None else [value.p50, value.p75, value.p90, value.p99]

    return {
        str(eid): [h.recently_failing, h.uptime_5m, pct(h.latency_ms), pct(h.throughput), h.tool_call_success,
                   h.tool_call_requests, h.attempts_30s, h.failures_30s]
        for eid, h in health.items()
    }


def _health_decode(data: dict[str, list]) -> dict[int, EndpointHealth]:
    result = {}
    for eid, (failing, up, lat, tps, tools, tool_requests, attempts, failures) in data.items():
        latency = Percentiles(*lat) if lat else None
        throughput = Percentiles(*tps) if tps else None
        result[int(eid)] = EndpointHealth(
            recently_failing=failing,
            p50_latency_ms=latency.p50 if latency else None,
            p50_throughput=throughput.p50 if throughput else None,
            uptime_5m=up,
            latency_ms=latency,
            throughput=throughput,
            tool_call_success=tools,
            tool_call_requests=tool_requests,
            attempts_30s=attempts,
            failures_30s=failures,
        )
    return result


# --- the process's engine and its background thread ---------------------------------------------

_engine: StatsEngine | None = None
_engine_lock = threading.Lock()


def stats_engine() -> StatsEngine:
    """This process's engine (Redis store when ``REDIS_URL`` is set), its background thread started."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                from django.conf import settings

                if redis_clients.redis_enabled():
                    store = RedisStatsStore(settings.COUNTER_PREFIX)
                else:
                    store = LocalStatsStore(settings.COUNTER_PREFIX)
                engine = StatsEngine(store)
                threading.Thread(target=_background, args=(engine,), name="endpoint-stats", daemon=True).start()
                _engine = engine
    return _engine


def _background(engine: StatsEngine) -> None:
    """Flush every second, refresh the health snapshot every two; roll up the in-process store too."""
    local = isinstance(engine.store, LocalStatsStore)
    rolled_at = time.monotonic()
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            engine.flush()
            if time.monotonic() - engine.health_at >= HEALTH_REFRESH_SECONDS:
                engine.refresh_health()
            if local and time.monotonic() - rolled_at >= LOCAL_ROLLUP_SECONDS:
                rolled_at = time.monotonic()
                engine.rollup()
        except Exception:
            logger.warning("endpoint stats: background pass failed", exc_info=True)


def stats_record(
    endpoint_id: int,
    *,
    ok: bool,
    status: int | None = None,
    ttft_ms: float | None = None,
    tokens_per_second: float | None = None,
    tool_calls: bool | None = None,
) -> None:
    """Count one attempt (hot path: a dict update under a lock, no I/O).

    ``ok``: the endpoint answered; ``status``: the HTTP status of a failure (429 = rate
    limited; 400/413/422 = the request's fault, not counted; ``None`` = network error or
    timeout); ``ttft_ms``/``tokens_per_second``: of a success, when known;
    ``tool_calls``: for requests that offered tools, whether valid tool calls came back.
    """
    stats_engine().record(
        endpoint_id, ok=ok, status=status, ttft_ms=ttft_ms, tokens_per_second=tokens_per_second, tool_calls=tool_calls
    )


def stats_flush() -> int:
    """Push this process's pending counters to the store (the background thread does it every second)."""
    return stats_engine().flush()


def stats_rollup(now: float | None = None) -> int:
    """Roll finished minutes and hours up (``routing.tasks.endpoint_stats_rollup``)."""
    return stats_engine().rollup(now)


def health_snapshot() -> dict[int, EndpointHealth]:
    """The last published health of every recently used endpoint; never blocks (read-only dict)."""
    return stats_engine().health


def endpoint_stats(endpoint_ids: Iterable[int]) -> dict[int, EndpointStats]:
    """Selector for the endpoints page: uptime (5m/30m/1d) and 30-minute percentiles per endpoint."""
    return stats_engine().endpoint_stats(endpoint_ids)


def stats_reset() -> None:
    """Forget pending counters, snapshots and stored statistics (tests)."""
    if _engine is not None:
        _engine.reset()
