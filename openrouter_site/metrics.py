"""Prometheus metrics: what the gateway does, recorded cheaply on the hot path, served at ``/metrics``.

Recorded per process in plain integers and lists on the event loop (no locks: a request costs a
few dictionary updates and two bisects; cost below) and turned into Prometheus families
(``prometheus_client``'s exposition) only when ``/metrics`` is read:

- ``http_requests_total{route,method,status}`` and ``http_request_duration_seconds{route}``: every
  HTTP request, by route (the inference paths by name, other paths by their Django URL pattern);
  402 and 429 answers are in ``status`` and, for the inference routes, in
  ``gateway_refusals_total{status}``.
- ``gateway_overhead_seconds``: per successful inference request, the time from its first byte
  until the answer (or a stream's first token) was ready, minus the time spent waiting for providers.
- ``upstream_latency_seconds{provider}`` / ``upstream_attempts_total{provider,status}``: each attempt
  at a provider (to its answer, or a stream's first token); ``gateway_fallbacks_total``: attempts
  after the first.
- Gauges, per process (summed over processes): ``gateway_requests_in_flight``,
  ``credit_holds_in_flight`` (running inference requests plus settlements not yet written: each
  holds credits), ``settlement_queue_depth`` and ``settlement_dead_letters``.

Several processes: set ``METRICS_DIR`` to a directory shared by the workers of a host
(empty when they start). Every process then writes its totals there once a second
(``metrics-<pid>.json``), and ``/metrics``, whichever worker answers, reports the sum over all of
them (gauges over the live ones only). Without it each process reports its own figures.

Cost per inference request, measured on this 2-core machine kind under load (best of 5 × 20,000
calls): about 10 µs for the request wrapper plus 4 µs per provider attempt; ``prometheus_client``'s
own metric objects, tried first, cost about 40 µs in-process and 70 µs in its multiprocess mode.

``/metrics`` is not public: a staff user's session, or ``Authorization: Bearer <METRICS_TOKEN>``
when ``METRICS_TOKEN`` is set (what a Prometheus scraper sends); anyone else gets a 404.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from bisect import bisect_left
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger("openrouter.metrics")

MULTIPROC_DIR = os.environ.get("METRICS_DIR", "")
WRITE_SECONDS = 1.0  # how often a process writes its totals for the others (multi-process mode)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1)


class Histogram:
    """Bucket counts (the last one is +Inf) and a sum; observing is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' "le"
        self.total += value


class Recorder:
    """This process's figures. Only the event loop writes them; snapshots copy them (atomic under the GIL)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.refusals: dict[int, int] = {}
        self.overhead = Histogram(OVERHEAD_BUCKETS)
        self.upstream: dict[str, Histogram] = {}
        self.attempts: dict[tuple[str, int], int] = {}
        self.fallbacks = 0
        self.in_flight = 0

    def snapshot(self) -> dict:
        from billing.metering import overcharge_count
        from billing.settlement import writer

        queued = writer.pending()
        return {
            "pid": os.getpid(),
            "requests": [[*k, v] for k, v in dict(self.requests).items()],
            "durations": {k: [list(h.counts), h.total] for k, h in dict(self.durations).items()},
            "refusals": dict(self.refusals),
            "overhead": [list(self.overhead.counts), self.overhead.total],
            "upstream": {k: [list(h.counts), h.total] for k, h in dict(self.upstream).items()},
            "attempts": [[*k, v] for k, v in dict(self.attempts).items()],
            "fallbacks": self.fallbacks,
            "overcharges": overcharge_count(),
            "gauges": {
                "gateway_requests_in_flight": self.in_flight,
                "credit_holds_in_flight": self.in_flight + queued,
                "settlement_queue_depth": queued,
            },
        }


recorder = Recorder()
_writer_started = False
_writer_lock = threading.Lock()


# --- recording (hot path) ---------------------------------------------------------------------


def django_route(path: str) -> str:
    """The URL pattern a path resolves to (bounded label values), or ``unmatched``."""
    from django.urls import Resolver404, resolve

    try:
        match = resolve(path)
    except Resolver404:
        return "unmatched"
    return "/" + (match.route or match.view_name or "unmatched")


async def observe(app, scope, receive, send, route: str, *, inference: bool = False) -> None:
    """Serve ``scope`` with ``app``, counting the request, its status and its duration under ``route``."""
    if MULTIPROC_DIR and not _writer_started:
        _start_writer()
    started = time.perf_counter()
    status = 0

    async def send_observed(message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    if inference:
        recorder.in_flight += 1
    try:
        await app(scope, receive, send_observed)
    finally:
        elapsed = time.perf_counter() - started
        histogram = recorder.durations.get(route)
        if histogram is None:
            histogram = recorder.durations[route] = Histogram(LATENCY_BUCKETS)
        histogram.observe(elapsed)
        key = (route, scope.get("method", ""), status)
        recorder.requests[key] = recorder.requests.get(key, 0) + 1
        if inference:
            recorder.in_flight -= 1
            if status == 402 or status == 429:
                recorder.refusals[status] = recorder.refusals.get(status, 0) + 1


def attempt_done(provider: str, status: int, seconds: float, *, fallback: bool, overhead: float | None) -> None:
    """One provider attempt finished (answered, first token, or failed); ``overhead`` once a request succeeded."""
    histogram = recorder.upstream.get(provider)
    if histogram is None:
        histogram = recorder.upstream[provider] = Histogram(LATENCY_BUCKETS)
    histogram.observe(seconds)
    key = (provider, status)
    recorder.attempts[key] = recorder.attempts.get(key, 0) + 1
    if fallback:
        recorder.fallbacks += 1
    if overhead is not None:
        recorder.overhead.observe(max(overhead, 0.0))


# --- several processes -------------------------------------------------------------------------


def _start_writer() -> None:
    global _writer_started
    with _writer_lock:
        if not _writer_started:
            _writer_started = True
            threading.Thread(target=_write_forever, name="metrics-writer", daemon=True).start()


def _write_forever() -> None:
    while True:
        try:
            write_snapshot()
        except Exception:  # a full disk must not stop the process; the next second tries again
            pass
        time.sleep(WRITE_SECONDS)


def write_snapshot() -> None:
    """Write this process's totals where the other processes' ``/metrics`` can read them."""
    folder = Path(MULTIPROC_DIR)
    path = folder / f"metrics-{os.getpid()}.json"
    tmp = folder / f".metrics-{os.getpid()}.tmp"
    tmp.write_text(json.dumps(recorder.snapshot()))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def snapshots() -> list[dict]:
    """Every process's totals: this one's now, the others' as last written (multi-process mode)."""
    own = recorder.snapshot()
    if not MULTIPROC_DIR:
        return [own]
    found = [own]
    for path in Path(MULTIPROC_DIR).glob("metrics-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("pid") == own["pid"]:
            continue
        if not _alive(int(data.get("pid", 0))):
            data["gauges"] = {}  # a dead process's totals still count; its gauges do not
        found.append(data)
    return found


# --- exposition ---------------------------------------------------------------------------------


def _histogram(family: HistogramMetricFamily, labels: list[str], bounds, counts: list[int], total: float) -> None:
    cumulative, running = [], 0
    for bound, count in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        running += count
        cumulative.append((bound, running))
    family.add_metric(labels, cumulative, total)


def _add_histograms(merged: dict, key, counts: list[int], total: float) -> None:
    entry = merged.setdefault(key, [[0] * len(counts), 0.0])
    entry[0] = [a + b for a, b in zip(entry[0], counts, strict=True)]
    entry[1] += total


class SnapshotCollector:
    """Prometheus families summed over every process's snapshot."""

    def collect(self):
        requests: dict[tuple, int] = {}
        attempts: dict[tuple, int] = {}
        refusals: dict[str, int] = {}
        durations: dict[str, list] = {}
        upstream: dict[str, list] = {}
        overhead: dict[str, list] = {}
        gauges: dict[str, int] = {}
        fallbacks = overcharges = 0
        for snap in snapshots():
            for route, method, status, n in snap["requests"]:
                requests[(route, method, str(status))] = requests.get((route, method, str(status)), 0) + n
            for provider, status, n in snap["attempts"]:
                attempts[(provider, str(status))] = attempts.get((provider, str(status)), 0) + n
            for status, n in snap["refusals"].items():
                refusals[str(status)] = refusals.get(str(status), 0) + n
            for route, (counts, total) in snap["durations"].items():
                _add_histograms(durations, route, counts, total)
            for provider, (counts, total) in snap["upstream"].items():
                _add_histograms(upstream, provider, counts, total)
            _add_histograms(overhead, "", *snap["overhead"])
            for name, value in snap["gauges"].items():
                gauges[name] = gauges.get(name, 0) + value
            fallbacks += snap["fallbacks"]
            overcharges += snap.get("overcharges", 0)

        family = CounterMetricFamily("http_requests", "HTTP requests answered", labels=["route", "method", "status"])
        for labels, n in sorted(requests.items()):
            family.add_metric(list(labels), n)
        yield family
        family = HistogramMetricFamily("http_request_duration_seconds", "HTTP request duration", labels=["route"])
        for route, (counts, total) in sorted(durations.items()):
            _histogram(family, [route], LATENCY_BUCKETS, counts, total)
        yield family
        family = CounterMetricFamily(
            "gateway_refusals", "Inference requests refused for credits (402) or rate limits (429)", labels=["status"]
        )
        for status in ("402", "429"):
            family.add_metric([status], refusals.get(status, 0))
        yield family
        family = HistogramMetricFamily(
            "gateway_overhead_seconds", "Time of a successful inference request not spent waiting for providers"
        )
        counts, total = overhead.get("", [[0] * (len(OVERHEAD_BUCKETS) + 1), 0.0])
        _histogram(family, [], OVERHEAD_BUCKETS, counts, total)
        yield family
        family = HistogramMetricFamily(
            "upstream_latency_seconds", "Provider attempt time, to its answer or first token", labels=["provider"]
        )
        for provider, (counts, total) in sorted(upstream.items()):
            _histogram(family, [provider], LATENCY_BUCKETS, counts, total)
        yield family
        family = CounterMetricFamily(
            "upstream_attempts", "Provider attempts by HTTP status (0: no answer)", labels=["provider", "status"]
        )
        for labels, n in sorted(attempts.items()):
            family.add_metric(list(labels), n)
        yield family
        yield CounterMetricFamily(
            "gateway_fallbacks", "Provider attempts after the first of a request", value=fallbacks
        )
        yield CounterMetricFamily(
            "gateway_overcharges",
            "Requests whose real cost exceeded their credit hold (charged in full; the balance may go below zero)",
            value=overcharges,
        )
        yield GaugeMetricFamily(
            "settlement_dead_letters",
            "Settlements set aside because they cannot be written (rows in the durable dead-letter table)",
            value=dead_letters_count(),
        )
        helps = {
            "gateway_requests_in_flight": "Inference requests running",
            "credit_holds_in_flight": "Credit holds not yet released: running inference requests plus unwritten settlements",
            "settlement_queue_depth": "Finished generations waiting for the settlement writer",
        }
        for name, text in helps.items():
            yield GaugeMetricFamily(name, text, value=gauges.get(name, 0))


def dead_letters_count() -> int:
    """The durable dead-letter table's size (read when ``/metrics`` is scraped, not per request)."""
    from billing.selectors import settlement_dead_letters_count

    try:
        return settlement_dead_letters_count()
    except Exception:  # the database is down: the other figures are still worth serving
        logger.warning("could not count settlement dead letters", exc_info=True)
        return -1


_registry = CollectorRegistry(auto_describe=False)
_registry.register(SnapshotCollector())


def _allowed(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def metrics_view(request):
    """``GET /metrics``: the Prometheus text format, for staff or a scraper with ``METRICS_TOKEN``."""
    if not _allowed(request):
        raise Http404
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
