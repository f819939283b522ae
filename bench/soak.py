"""Soak test: the gateway at a steady rate for a long time, with streaming and cancellations.

Starts the provider simulator (a little latency, so that streams last long enough to be
cancelled), prepares a PostgreSQL database and Redis (as ``bench/run.py`` does), serves the
gateway with uvicorn (``--processes`` workers, default 2: the recommended production setup) and
sends an open-loop load of ``--rate`` requests a second for ``--minutes`` minutes: a mix of
non-streaming requests, streams read to the end, and streams the client abandons after the
first chunk (the gateway must close the upstream and charge what was generated). Every
``--sample-seconds`` it prints the resident memory (RSS) of every server process and the error
count so far; at the end, per process: first, last and peak RSS and the growth trend (least-squares
slope over the run after warm-up, MB per hour), then whether every generation was recorded and
the ledger balances. Exit status 0 only if there were no errors, every process stayed at or below
``--max-rss-mb`` and none grew by more than ``--max-growth-mb`` over the run after warm-up.

Not part of CI. Run: ``.venv/bin/python bench/soak.py [--minutes 30] [--rate 40] [--processes 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: process handling, database preparation)

WARMUP_SECONDS = 120.0  # RSS grows while caches and pools fill; the trend is judged after this


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    cancelled: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def group_pids(pgid: int) -> list[int]:
    """Every live process in a process group (uvicorn's supervisor and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
            pids.append(int(entry.name))
    return sorted(pids)


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in points) / var * 3600


class Load:
    """Open-loop load: one request every 1/rate seconds, whatever the previous ones are doing."""

    def __init__(self, url: str, key: str, model: str, opts: argparse.Namespace) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.model = model
        self.opts = opts
        self.tally = Tally()
        self.kinds = itertools.cycle(self._mix())

    def _mix(self) -> list[str]:
        """Twenty requests in a cycle, in the proportions asked for."""
        streams = round(20 * self.opts.stream_share)
        cancels = round(20 * self.opts.cancel_share)
        return ["cancel"] * cancels + ["stream"] * streams + ["json"] * (20 - streams - cancels)

    def body(self, kind: str) -> bytes:
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"Soak request {self.tally.sent}: say something."}],
            "max_tokens": 200 if kind == "cancel" else 24,
        }
        if kind != "json":
            payload["stream"] = True
        return json.dumps(payload).encode()

    async def one(self, session: aiohttp.ClientSession, kind: str) -> None:
        try:
            async with session.post(self.url, data=self.body(kind), headers=self.headers) as response:
                if response.status != 200:
                    self.tally.error(f"http {response.status}")
                    await response.read()
                    return
                if kind == "json":
                    data = await response.json(content_type=None)
                    if not data.get("choices"):
                        self.tally.error("no choices")
                        return
                elif kind == "stream":
                    text = await response.read()
                    if not text.rstrip().endswith(b"data: [DONE]"):
                        self.tally.error("stream not finished")
                        return
                else:
                    async for chunk in response.content.iter_any():
                        if b"data: {" in chunk:
                            break  # the first content arrived: leave
                    response.close()
                    self.tally.cancelled += 1
                    return
                self.tally.ok += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.tally.error(type(exc).__name__)

    async def run(self, seconds: float, on_tick) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=0)
        tasks: set[asyncio.Task] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            start = time.monotonic()
            interval = 1.0 / self.opts.rate
            next_at = start
            while (now := time.monotonic()) - start < seconds:
                if now >= next_at:
                    task = asyncio.create_task(self.one(session, next(self.kinds)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    self.tally.sent += 1
                    next_at += interval
                on_tick(now - start)
                await asyncio.sleep(max(0.0, min(next_at - time.monotonic(), 0.05)))
            if tasks:
                await asyncio.wait(tasks, timeout=60)


def count_generations(env: dict[str, str]) -> int:
    code = "from activity.models import Generation; print(Generation.objects.count())"
    return int(bench.manage(env, "shell", "-c", code).strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the gateway: steady load, RSS per process, errors.")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (open loop)")
    parser.add_argument("--processes", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--stream-share", type=float, default=0.4, help="share of streams read to the end")
    parser.add_argument("--cancel-share", type=float, default=0.1, help="share of streams abandoned mid-way")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--max-rss-mb", type=float, default=250.0)
    parser.add_argument("--max-growth-mb", type=float, default=20.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--model", default=bench.DEFAULT_MODEL)
    parser.add_argument(
        "--database-url", default=bench.BENCH_DATABASE_URL.replace("openrouter_bench", "openrouter_soak")
    )
    parser.add_argument("--redis-url", default=bench.BENCH_REDIS_URL)
    opts = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, bench.raise_on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="openrouter-soak-"))
    procs = bench.Processes(tmp)
    samples: dict[str, list[tuple[float, float]]] = {}
    try:
        sim_port = bench.free_port()
        config = tmp / "simulator.json"
        # 20 ms to the first token, 400 tokens/s: a 24-token answer takes ~80 ms, a cancelled 200-token one would take 0.5 s
        config.write_text(json.dumps({"default": {"latency_ms": 20, "tokens_per_second": 400}, "providers": {}}))
        procs.start(
            "simulator",
            [
                bench.PYTHON,
                "-m",
                "routing.simulator",
                "--host",
                bench.HOST,
                "--port",
                str(sim_port),
                "--config",
                str(config),
            ],
            dict(os.environ),
        )
        bench.wait_for_port(procs, "simulator", sim_port, bench.SERVER_START_TIMEOUT)
        upstream = f"http://{bench.HOST}:{sim_port}"
        env = bench.gateway_env("pg-redis", tmp, upstream)
        env.update({"DATABASE_URL": opts.database_url, "REDIS_URL": opts.redis_url, "COUNTER_PREFIX": "soak"})
        key = bench.prepare_gateway(env)
        port = bench.free_port()
        procs.start("gateway", bench.gateway_command("uvicorn", port, opts.processes), env)
        bench.wait_for_port(procs, "gateway", port, bench.SERVER_START_TIMEOUT)
        time.sleep(2.0)
        watched = {
            "simulator": procs.running["simulator"].pid,
            "gateway": procs.running["gateway"].pid,
        }
        load = Load(f"http://{bench.HOST}:{port}/api/v1/chat/completions", key, opts.model, opts)
        mix = f"{opts.stream_share:.0%} streamed, {opts.cancel_share:.0%} cancelled mid-stream"
        print(
            f"soak: {opts.minutes:g} min at {opts.rate:g} req/s ({mix}), uvicorn with {opts.processes} "
            f"process(es), PostgreSQL + Redis; RSS every {opts.sample_seconds:g} s",
            flush=True,
        )
        next_sample = [0.0]

        def sample(elapsed: float) -> None:
            if elapsed < next_sample[0]:
                return
            next_sample[0] += opts.sample_seconds
            parts = []
            for name, pgid in watched.items():
                pids = group_pids(pgid)
                for index, pid in enumerate(pids):
                    label = name if len(pids) == 1 else f"{name}[{'main' if pid == pgid else index}]"
                    mb = rss_mb(pid)
                    if mb is None:
                        continue
                    samples.setdefault(label, []).append((elapsed, mb))
                    parts.append(f"{label}={mb:.1f}")
            t = load.tally
            print(
                f"t={elapsed / 60:5.1f}min sent={t.sent} ok={t.ok} cancelled={t.cancelled} errors={t.error_count} "
                f"rss_mb: {' '.join(parts)}",
                flush=True,
            )

        try:
            import uvloop

            uvloop.run(load.run(opts.minutes * 60, sample))
        except ImportError:
            asyncio.run(load.run(opts.minutes * 60, sample))
        sample(next_sample[0])  # one last sample after the load stopped
        tally = load.tally
        time.sleep(3.0)  # the settlement writers flush every few milliseconds
        recorded = count_generations(env)
        ledger = bench.manage(env, "check_ledger").strip().splitlines()
    except bench.SetupError as exc:
        print(f"soak failed to start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nprocess              first MB   last MB   peak MB   trend MB/h (after warm-up)")
    worst_peak = 0.0
    worst_growth = 0.0
    for label, points in samples.items():
        steady = [p for p in points if p[0] >= WARMUP_SECONDS] or points
        peak = max(m for _, m in points)
        growth = steady[-1][1] - steady[0][1]
        worst_peak = max(worst_peak, peak)
        worst_growth = max(worst_growth, growth)
        trend = slope_mb_per_hour(steady)
        print(f"{label:<20} {points[0][1]:8.1f}  {points[-1][1]:8.1f}  {peak:8.1f}  {trend:+10.1f}")
    print(
        f"\nrequests sent {tally.sent}: ok {tally.ok}, cancelled {tally.cancelled}, errors {tally.error_count} {tally.errors}"
    )
    print(f"generations recorded: {recorded} (one per admitted request: {recorded == tally.sent})")
    print("check_ledger: " + (ledger[-1] if ledger else "(no output)"))
    passed = tally.error_count == 0 and worst_peak <= opts.max_rss_mb and worst_growth <= opts.max_growth_mb
    print(
        f"SOAK {'PASS' if passed else 'FAIL'} errors={tally.error_count} peak_rss_mb={worst_peak:.1f} "
        f"growth_after_warmup_mb={worst_growth:.1f} generations_match={recorded == tally.sent}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
