"""routing.stats: live endpoint statistics (percentiles, uptime windows, recent failures),
on the in-process store and on Redis (when REDIS_URL is set)."""

from __future__ import annotations

import secrets

import pytest
from django.conf import settings

from routing import stats
from routing.stats import (
    LAT0,
    LATENCY_EDGES,
    SLOTS,
    LocalStatsStore,
    RedisStatsStore,
    StatsEngine,
    endpoint_stats,
    health_snapshot,
    percentiles,
    stats_engine,
    stats_flush,
    stats_record,
)

# A whole hour (so minute and hour rollups line up), in the past: windows are computed from `now`.
T = 1_700_002_800
assert T % 3600 == 0


@pytest.fixture(params=["local", "redis"])
def engine(request):
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL is not set")
        store = RedisStatsStore(f"test-stats-{secrets.token_hex(4)}")
    else:
        store = LocalStatsStore("test")
    engine = StatsEngine(store)
    yield engine
    store.reset()


def record_many(engine, endpoint_id, at, *, ok=0, errors=0, limited=0, **kwargs):
    for _ in range(ok):
        engine.record(endpoint_id, ok=True, status=200, at=at, **kwargs)
    for _ in range(errors):
        engine.record(endpoint_id, ok=False, status=502, at=at)
    for _ in range(limited):
        engine.record(endpoint_id, ok=False, status=429, at=at)


def near(value, expected, tolerance=0.05):
    """Histogram buckets are 20 % wide; interpolation inside them lands much closer on smooth data."""
    return abs(value - expected) <= tolerance * expected


# --- percentiles ---------------------------------------------------------------------------------


def test_percentiles_of_a_histogram_interpolate_inside_buckets():
    counts = [0] * SLOTS
    # 100 samples in the bucket [10, 12) ms: the median is half-way through it.
    counts[LAT0 + 1] = 100
    result = percentiles(counts, LAT0, LATENCY_EDGES, slow_end_high=True)
    assert LATENCY_EDGES[0] == 10.0 and LATENCY_EDGES[1] == pytest.approx(12.0)
    assert result.p50 == pytest.approx(11.0, abs=0.05)
    assert result.p99 == pytest.approx(11.98, abs=0.05)
    assert percentiles([0] * SLOTS, LAT0, LATENCY_EDGES, slow_end_high=True) is None


def test_latency_and_throughput_percentiles_from_traffic(engine):
    # 1000 successes: TTFT 100..1098 ms, throughput 10..109.9 tokens/s, evenly spread.
    for i in range(1000):
        engine.record(7, ok=True, status=200, ttft_ms=100 + i * 0.999, tokens_per_second=10 + i * 0.1, at=T + 5)
    engine.flush()
    health = engine.compute_health(T + 9)[7]
    latency, throughput = health.latency_ms, health.throughput
    assert near(latency.p50, 600) and near(latency.p75, 850) and near(latency.p90, 1000) and near(latency.p99, 1090)
    # Throughput percentiles read from the slow end: p90 is the rate 90 % of requests reach.
    assert near(throughput.p50, 60) and near(throughput.p75, 35) and near(throughput.p90, 20)
    assert near(throughput.p99, 11)
    assert throughput.p50 > throughput.p75 > throughput.p90 > throughput.p99
    assert health.p50_latency_ms == latency.p50 and health.p50_throughput == throughput.p50
    assert health.uptime_5m == 100.0 and not health.recently_failing

    stats30 = engine.endpoint_stats([7], now=T + 9)[7]
    assert stats30.latency_30m == latency and stats30.throughput_30m == throughput


def test_percentiles_cover_the_last_five_minutes_only(engine):
    engine.record(1, ok=True, ttft_ms=5000, tokens_per_second=5, at=T - 400)  # 6.7 min ago
    engine.record(1, ok=True, ttft_ms=200, tokens_per_second=100, at=T - 100)
    engine.flush()
    health = engine.compute_health(T)[1]
    assert near(health.p50_latency_ms, 200, 0.2) and near(health.p50_throughput, 100, 0.2)
    # The 30-minute figures of the endpoints page see both.
    assert engine.endpoint_stats([1], now=T)[1].latency_30m.p99 > 4000


def test_failures_carry_no_latency(engine):
    record_many(engine, 3, T, errors=4)
    engine.flush()
    health = engine.compute_health(T)[3]
    assert health.latency_ms is None and health.p50_latency_ms is None and health.p50_throughput is None
    assert health.uptime_5m == 0.0


# --- uptime ----------------------------------------------------------------------------------------


def test_uptime_excludes_rate_limits(engine):
    record_many(engine, 1, T, ok=5, limited=5)
    record_many(engine, 2, T, ok=5, limited=5, errors=5)
    engine.flush()
    result = engine.endpoint_stats([1, 2], now=T + 1)
    assert result[1].uptime_5m == 100.0 and result[1].uptime_30m == 100.0 and result[1].uptime_1d == 100.0
    assert result[2].uptime_5m == 50.0


def test_only_rate_limits_means_no_uptime(engine):
    record_many(engine, 1, T, limited=3)
    engine.flush()
    assert engine.endpoint_stats([1], now=T)[1].uptime_5m is None


def test_the_requests_own_faults_are_not_counted(engine):
    for status in (400, 413, 422):
        engine.record(1, ok=False, status=status, at=T)
    engine.record(1, ok=False, status=None, at=T)  # a timeout is the endpoint's failure
    engine.flush()
    assert engine.endpoint_stats([1], now=T)[1].uptime_5m == 0.0
    assert engine.compute_health(T)[1].failures_30s == 1


def _uptime_scenario(engine, now):
    record_many(engine, 1, now - 10, ok=9, errors=1)  # in all three windows
    record_many(engine, 1, now - 20 * 60, errors=10)  # 30 min and 1 day
    record_many(engine, 1, now - 10 * 3600, ok=10)  # 1 day only


def test_uptime_over_five_minutes_thirty_minutes_and_a_day(engine):
    now = T + 1800 + 5
    _uptime_scenario(engine, now)
    engine.flush()
    # The rollup runs every minute; here: soon after the oldest traffic, then now.
    engine.rollup(now=now - 10 * 3600 + 120)
    engine.rollup(now=now)
    result = engine.endpoint_stats([1, 99], now=now)
    assert result[1].uptime_5m == 90.0
    assert result[1].uptime_30m == 45.0
    assert result[1].uptime_1d == pytest.approx(63.33)
    assert result[99].uptime_5m is None and result[99].uptime_1d is None and result[99].latency_30m is None


def test_reads_are_the_same_before_and_after_the_rollup(engine):
    now = T + 2 * 3600 - 3600 + 1234  # an unaligned time, with traffic over the last 100 minutes
    for minutes_ago in range(0, 100, 3):
        at = now - minutes_ago * 60 - 7
        record_many(engine, 4, at, ok=3, errors=minutes_ago % 2, ttft_ms=100 + minutes_ago * 10,
                    tokens_per_second=50 + minutes_ago)
        record_many(engine, 5, at, ok=1, limited=1, tool_calls=minutes_ago % 3 == 0)
    engine.flush()
    before = engine.endpoint_stats([4, 5], now=now)
    health_before = engine.compute_health(now)
    keys_before = len(engine._window_keys(now, 86400, engine.store.marks()))

    assert engine.rollup(now=now) > 0
    assert engine.rollup(now=now) == 0, "nothing new to roll up"
    assert engine.endpoint_stats([4, 5], now=now) == before
    assert engine.compute_health(now) == health_before
    keys_after = len(engine._window_keys(now, 86400, engine.store.marks()))
    assert keys_after < keys_before / 5, (keys_before, keys_after)


def test_a_day_is_read_from_hour_minute_and_bucket_hashes(engine):
    now = T + 5 * 3600 + 125
    engine.rollup(now=now - 3 * 3600)
    engine.rollup(now=now)
    keys = engine._window_keys(now, 86400, engine.store.marks())
    levels = [key.split(":")[-2] for key in keys]
    assert set(levels) == {"h", "m", "s"}
    assert len(keys) < 200


def test_two_processes_add_up(engine):
    other = StatsEngine(engine.store)
    record_many(engine, 1, T, ok=3)
    record_many(other, 1, T, errors=1)
    engine.flush()
    other.flush()
    assert engine.endpoint_stats([1], now=T)[1].uptime_5m == 75.0


def test_a_failed_flush_keeps_the_counts(engine, monkeypatch):
    record_many(engine, 1, T, ok=2)

    def broken(batch, ttl):
        raise ConnectionError("store down")

    monkeypatch.setattr(engine.store, "add", broken)
    with pytest.raises(ConnectionError):
        engine.flush()
    monkeypatch.undo()
    record_many(engine, 1, T, errors=2)
    assert engine.flush() == 1
    assert engine.endpoint_stats([1], now=T)[1].uptime_5m == 50.0


# --- recent failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ok", "errors", "limited", "failing"),
    [
        (0, 1, 0, False),  # one failure is not an outage
        (0, 2, 0, True),
        (3, 2, 0, False),  # 40 %
        (3, 3, 0, True),  # 50 %
        (1, 0, 2, True),  # 429s count: the endpoint is not serving us
        (50, 5, 0, False),
    ],
)
def test_recently_failing(engine, ok, errors, limited, failing):
    record_many(engine, 1, T + 3, ok=ok, errors=errors, limited=limited)
    engine.flush()
    health = engine.compute_health(T + 5)[1]
    assert health.recently_failing is failing
    assert health.failures_30s == errors + limited and health.attempts_30s == ok + errors + limited


def test_failures_older_than_thirty_seconds_are_forgiven(engine):
    now = T + 5
    record_many(engine, 1, now - 45, errors=5)
    record_many(engine, 2, now - 25, errors=5)
    engine.flush()
    health = engine.compute_health(now)
    assert not health[1].recently_failing and health[1].uptime_5m == 0.0
    assert health[2].recently_failing


def test_tool_call_success(engine):
    for valid in [True] * 8 + [False] * 2:
        engine.record(1, ok=True, tool_calls=valid, at=T)
    engine.record(1, ok=True, at=T)  # no tools offered: not counted
    engine.flush()
    health = engine.compute_health(T)[1]
    assert health.tool_call_success == 0.8 and health.tool_call_requests == 10


# --- the shared snapshot and the module's engine ------------------------------------------------


def test_health_snapshot_is_computed_once_and_shared(engine, monkeypatch):
    record_many(engine, 1, T, errors=3)
    engine.flush()
    first = engine.refresh_health(now=T + 1)
    assert first[1].recently_failing

    other = StatsEngine(engine.store)

    def not_again(now=None):
        raise AssertionError("a fresh snapshot exists; it must be reused")

    monkeypatch.setattr(other, "compute_health", not_again)
    assert other.refresh_health(now=T + 2) == first
    monkeypatch.undo()
    assert other.refresh_health(now=T + 45)[1].recently_failing is False  # stale: recomputed, errors aged out


def test_module_functions_record_flush_and_read():
    stats_record(41, ok=True, status=200, ttft_ms=300, tokens_per_second=80)
    stats_record(41, ok=False, status=503)
    stats_record(42, ok=False, status=429)
    stats_flush()
    result = endpoint_stats([41, 42])
    assert result[41].uptime_5m == 50.0 and result[41].latency_30m is not None
    assert result[42].uptime_5m is None
    stats_engine().refresh_health()
    snapshot = health_snapshot()
    assert snapshot[41].uptime_5m == 50.0 and snapshot[42].attempts_30s == 1
    store = stats_engine().store
    assert isinstance(store, RedisStatsStore if settings.REDIS_URL else LocalStatsStore)


def test_recording_is_cheap():
    engine = StatsEngine(LocalStatsStore("bench"))
    import time

    started = time.perf_counter()
    for _ in range(20000):
        engine.record(1, ok=True, ttft_ms=250.0, tokens_per_second=90.0)
    per_call = (time.perf_counter() - started) / 20000
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} µs per record"
    assert stats.BUCKET_SECONDS == 10


def test_rollup_task_is_scheduled_and_runs():
    from routing.tasks import endpoint_stats_rollup

    schedule = settings.CELERY_BEAT_SCHEDULE["endpoint-stats-rollup"]
    assert schedule["task"] == endpoint_stats_rollup.name == "routing.tasks.endpoint_stats_rollup"
    stats_record(1, ok=True, status=200)
    stats_flush()
    assert endpoint_stats_rollup.apply().get() >= 0
    assert stats_engine().store.marks()[0] > 0
