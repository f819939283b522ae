"""A burst from a cold start: N parallel streams from a key the server has not seen yet (issue 13).

For each setup (the default embedded one: SQLite, in-process counters; and PostgreSQL + Redis)
this starts the provider simulator (``--latency-ms`` before the first token, then
``--tokens-per-second``) and, for every row, a fresh gateway server on a free port, warmed by one
streaming request from the *warm* key (so the catalog, the upstream session and that key's
caches are loaded), then sends ``--requests`` streaming chat requests at once, one aiohttp
connection each, and times the first ``data:`` chunk at the client:

* ``warm``    the burst uses the key of the warm-up request (already used once by the process);
* ``cold``    the burst uses a key of another account, never seen by the process;
* ``direct``  the same burst straight to the simulator (the floor).

Targets (issue 13): the cold p50 within 20% of the warm p50, the warm p50 within 300 ms of the
direct p50. Not a test: the machine is shared, so run it a few times (``--rounds``).

Run: ``.venv/bin/python bench/burst.py [--setups default,postgres] [--rounds 3] [--server daphne]``
(``make bench-burst``). PostgreSQL and Redis come from ``--database-url`` (the database is dropped
and re-created) and ``--redis-url`` (only keys under ``burst:`` are deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402  (bench/run.py: secrets, ports, manage.py, store resets)
    HOST,
    PYTHON,
    ROOT,
    RUN_SECRETS,
    SetupError,
    free_port,
    manage,
    reset_external_stores,
)

MODEL = "openai/gpt-4o-mini"
DIRECT_PROVIDER, DIRECT_MODEL = "openai", "gpt-4o-mini"
START_TIMEOUT = 60.0
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/openrouter_bench_burst"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"


# --- processes ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            self._wait_listening()
        except BaseException:  # not started, or interrupted while starting: stop it all the same
            self.__exit__()
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise SetupError(f"{self.name} did not listen on {self.port} within {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def __exit__(self, *exc) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def gateway_command(server: str, port: int, backlog: int) -> list[str]:
    """The web server as ``make run`` starts it (Daphne on uvloop, ``openrouter_site/daphne_server.py``), or uvicorn as the README suggests for production.

    ``backlog`` 0 leaves the server's own default (Daphne/Twisted: 50, uvicorn: 2048).
    """
    app = "openrouter_site.asgi:application"
    if server == "daphne":
        if backlog:
            return [PYTHON, "-m", "openrouter_site.daphne_server", "-e", f"tcp:port={port}:interface={HOST}:backlog={backlog}", app]
        return [PYTHON, "-m", "openrouter_site.daphne_server", "-b", HOST, "-p", str(port), app]
    command = [PYTHON, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning"]
    if backlog:
        command += ["--backlog", str(backlog)]
    return [*command, app]


def create_key(env: dict[str, str], email: str) -> str:
    """A key of a new account, with credits and a monthly limit (so its limit window is loaded too)."""
    out = manage(env, "create_api_key", email, "--credits", "1000", "--limit", "500", "--limit-reset", "monthly")
    return out.strip().splitlines()[-1].strip()


# --- the burst ------------------------------------------------------------------------------


@dataclass
class Result:
    setup: str
    row: str
    firsts_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def percentile(self, p: float) -> float | None:
        values = sorted(self.firsts_ms)
        if not values:
            return None
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


def body(model: str, max_tokens: int) -> bytes:
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in a few words."}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    return json.dumps(payload).encode()


async def one_stream(session: aiohttp.ClientSession, url: str, headers: dict, data: bytes, result: Result) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url, data=data, headers=headers) as response:
            if response.status != 200:
                await response.read()
                result.errors[str(response.status)] = result.errors.get(str(response.status), 0) + 1
                return
            first = None
            async for line in response.content:
                if first is None and line.startswith(b"data:"):
                    first = (time.perf_counter() - started) * 1000
            if first is None:
                result.errors["no data"] = result.errors.get("no data", 0) + 1
                return
            result.firsts_ms.append(first)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        name = type(exc).__name__
        result.errors[name] = result.errors.get(name, 0) + 1


async def burst(url: str, headers: dict, data: bytes, n: int, result: Result) -> None:
    # One connection per request (no pooling between them), as n separate clients would do.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one_stream(session, url, headers, data, result) for _ in range(n)))
        result.wall_s = time.perf_counter() - started


def run_burst(url: str, headers: dict, data: bytes, n: int, result: Result) -> Result:
    asyncio.run(burst(url, headers, data, n, result))
    return result


def warm_up(url: str, key: str, data: bytes) -> None:
    result = run_burst(url, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, data, 1, Result("", ""))
    if not result.firsts_ms:
        raise SetupError(f"the warm-up request failed: {result.errors}")


# --- orchestration --------------------------------------------------------------------------


@dataclass
class Bench:
    opts: argparse.Namespace
    tmp: Path
    simulator_url: str = ""
    results: list[Result] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def env(self, setup: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
        env.update(
            {
                "SQLITE_PATH": str(self.tmp / f"{setup}.sqlite3"),
                "VAR_DIR": str(self.tmp),
                "PROVIDER_SIMULATOR_URL": self.simulator_url,
                "DJANGO_SETTINGS_MODULE": "openrouter_site.settings",
                "DEBUG": "0",
                "COUNTER_PREFIX": "burst",
            }
        )
        # DEBUG off refuses the public development secrets: this run's own, random.
        for name, value in RUN_SECRETS.items():
            env.setdefault(name, value)
        if setup == "postgres":
            env["DATABASE_URL"] = self.opts.database_url
            env["REDIS_URL"] = self.opts.redis_url
        return env

    def direct(self) -> None:
        url = f"{self.simulator_url}/p/{DIRECT_PROVIDER}/v1/chat/completions"
        headers = {"Authorization": "Bearer sk-burst", "Content-Type": "application/json"}
        data = body(DIRECT_MODEL, self.opts.max_tokens)
        run_burst(url, headers, data, 1, Result("", ""))
        self.record(run_burst(url, headers, data, self.opts.requests, Result("-", "direct")))

    def setup(self, setup: str) -> None:
        env = self.env(setup)
        reset_external_stores(env)
        manage(env, "migrate", "--noinput")
        manage(env, "load_catalog")
        warm_key = create_key(env, "burst-warm@example.com")
        data = body(MODEL, self.opts.max_tokens)
        for round_ in range(self.opts.rounds):
            cold_key = create_key(env, f"burst-cold-{round_}@example.com")
            for row, key in (("warm", warm_key), ("cold", cold_key)):
                port = free_port()
                url = f"http://{HOST}:{port}/api/v1/chat/completions"
                name = f"{setup}-{row}-{round_}"
                command = gateway_command(self.opts.server, port, self.opts.backlog)
                with Server(name, command, env, port, self.tmp / f"{name}.log"):
                    warm_up(url, warm_key, data)
                    time.sleep(0.5)
                    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                    self.record(run_burst(url, headers, data, self.opts.requests, Result(setup, row)))
            self.direct()  # interleaved, so the floor sees the same machine load

    def record(self, result: Result) -> None:
        self.results.append(result)
        print(format_row(result), flush=True)

    def execute(self) -> None:
        config = self.tmp / "simulator.json"
        settings = {"latency_ms": self.opts.latency_ms, "tokens_per_second": self.opts.tokens_per_second}
        config.write_text(json.dumps({"default": settings, "providers": {}}))
        port = free_port()
        self.simulator_url = f"http://{HOST}:{port}"
        command = [PYTHON, "-m", "routing.simulator", "--host", HOST, "--port", str(port), "--config", str(config)]
        with Server("simulator", command, dict(os.environ), port, self.tmp / "simulator.log"):
            print(header(), flush=True)
            for setup in self.opts.setups:
                try:
                    self.setup(setup)
                except SetupError as exc:
                    self.failures.append(f"{setup}: {exc}")
                    print(f"! {setup} skipped: {exc}", flush=True)


# --- report ---------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def header() -> str:
    return f"{'setup':<9} {'row':<7} {'ok':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'wall s':>6}  errors"


def format_row(r: Result) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "0"
    return (
        f"{r.setup:<9} {r.row:<7} {len(r.firsts_ms):>5} {ms(r.percentile(50)):>7} {ms(r.percentile(90)):>7} "
        f"{ms(r.percentile(99)):>7} {ms(max(r.firsts_ms, default=None)):>7} {r.wall_s:>6.1f}  {errors}"
    )


def median_p50(results: list[Result], setup: str, row: str) -> float | None:
    values = [r.percentile(50) for r in results if (r.setup, r.row) == (setup, row) and r.firsts_ms]
    return statistics.median(values) if values else None


def report(bench: Bench) -> None:
    print("\n" + header() + "\n" + "-" * len(header()))
    for result in sorted(bench.results, key=lambda r: (r.setup, r.row)):
        print(format_row(result))
    direct = median_p50(bench.results, "-", "direct")
    for setup in bench.opts.setups:
        warm, cold = median_p50(bench.results, setup, "warm"), median_p50(bench.results, setup, "cold")
        if warm is None or cold is None or direct is None:
            continue
        ratio = cold / warm - 1
        added = warm - direct
        verdict = "ok" if ratio <= 0.20 and added <= 300 else "MISSED"
        print(
            f"SUMMARY_BURST setup={setup} server={bench.opts.server} direct_p50_ms={direct:.0f} warm_p50_ms={warm:.0f} "
            f"cold_p50_ms={cold:.0f} cold_vs_warm={ratio:+.0%} warm_minus_direct_ms={added:.0f} targets={verdict}"
        )
    for failure in bench.failures:
        print(f"not measured: {failure.splitlines()[0]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cold-key burst benchmark (issue 13).")
    parser.add_argument("--requests", type=int, default=500, help="parallel streams per burst (default 500)")
    parser.add_argument("--latency-ms", type=float, default=300, help="simulator delay before the first token")
    parser.add_argument("--tokens-per-second", type=float, default=20, help="simulator stream rate")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens asked per request (keeps a burst short)")
    parser.add_argument("--rounds", type=int, default=1, help="warm + cold rows per setup, each on a fresh server")
    parser.add_argument(
        "--setups", default="default,postgres",
        help="comma-separated: default (SQLite, in-process counters), postgres (PostgreSQL + Redis)",
    )
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne", help="daphne is what make run starts")
    parser.add_argument(
        "--backlog", type=int, default=int(os.environ.get("LISTEN_BACKLOG", "2048")),
        help="listen backlog passed to the server (env LISTEN_BACKLOG; 0: the server's own default)",
    )
    parser.add_argument("--database-url", default=os.environ.get("BURST_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BURST_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (server logs)")
    opts = parser.parse_args(argv)
    opts.setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    unknown = set(opts.setups) - {"default", "postgres"}
    if unknown:
        parser.error(f"unknown setup(s): {', '.join(sorted(unknown))}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    load = os.getloadavg()[0]
    print(
        f"burst: {opts.requests} streams, simulator {opts.latency_ms:.0f} ms + {opts.tokens_per_second:g} tokens/s, "
        f"server {opts.server}, backlog {opts.backlog or 'server default'}, load average {load:.2f}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="openrouter-burst-"))
    bench = Bench(opts, tmp)
    try:
        bench.execute()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except SetupError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if opts.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    report(bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
