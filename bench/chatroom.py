"""Chatroom bench: many sockets, several models each, one Daphne worker, against the provider simulator.

Starts the simulator (``--tokens-per-second`` per stream, ``--latency-ms`` to the first token), prepares
a PostgreSQL database and Redis as ``bench/run.py`` does, signs a funded user in (a real session cookie)
and serves the site with Daphne, one process. Then:

1. the baseline: ``--sockets × --models`` concurrent streams straight to the simulator (aiohttp),
   time to the first content token of each;
2. the chatroom: ``--sockets`` WebSockets to ``/ws/chat`` (session cookie, the page's Origin), each
   sending one ``send`` frame naming ``--models`` columns, all at once; every frame acknowledged as the
   page does; time to the first content token of each column over the socket.

Reported: errors (error frames, unfinished columns, wrong token counts, failed sockets), the Daphne
worker's resident memory before, at its peak during and after the streams, the first-token latency
p50/p95 over the socket and straight from the simulator, and their difference at p50 (what the
gateway and the socket add to the simulator's first token). The last line is::

    CHATROOM streams=<n> errors=<e> daphne_peak_rss_mb=<m> ttft_socket_p50_ms=<a> ttft_direct_p50_ms=<b> added_p50_ms=<c> relay_p50_ms=<d>

``relay`` is the issue's "first token in the browser after the simulator's first token": the socket's first
token minus the moment the gateway received the simulator's first token (from the generation record).

Timing figures mean something only on a quiet machine. Run:
``.venv/bin/python bench/chatroom.py [--sockets 125] [--models 4] [--tokens-per-second 20] [--tokens 200]``
(``make bench-chatroom``). A smoke run: ``--sockets 5 --models 2 --tokens 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: processes, ports, database preparation, secrets)
from soak import rss_mb  # noqa: E402

EMAIL = "bench@example.com"
PROMPT = [{"role": "user", "content": "Tell me about the sea."}]
ACK_EVERY = 16


@dataclass
class Tally:
    ttft_ms: list[float] = field(default_factory=list)
    first_wall: dict[str, float] = field(default_factory=dict)  # generation id -> wall time its first token arrived
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def relay_delays_ms(env: dict[str, str], tmp: Path, first_wall: dict[str, float]) -> tuple[list[float], list[float]]:
    """For each stream: when its first token reached the bench over the socket, minus when the gateway got the
    simulator's first token (the generation record: ``created_at`` + ``first_token_ms``; one clock, one machine;
    ``first_token_ms`` is whole milliseconds, rounded down, so this errs up to 1 ms on the high side)."""
    ids = tmp / "generation-ids.json"
    ids.write_text(json.dumps(list(first_wall)))
    code = (
        "import json; from activity.models import Generation; "
        f"ids = json.load(open({str(ids)!r})); "
        "print(json.dumps({g.id: [g.created_at.timestamp(), g.first_token_ms] "
        "for g in Generation.objects.filter(id__in=ids, first_token_ms__isnull=False)}))"
    )
    rows = json.loads(bench.manage(env, "shell", "-c", code).strip().splitlines()[-1])
    relay = [(first_wall[g] - (created + first_ms / 1000)) * 1000 for g, (created, first_ms) in rows.items()]
    return relay, [first_ms for _created, first_ms in rows.values()]


def session_cookie(env: dict[str, str]) -> str:
    """A signed-in session for the bench user (Django's own login machinery), as a cookie value."""
    code = (
        "from django.contrib.auth import get_user_model; from django.test import Client; "
        f"c = Client(); c.force_login(get_user_model().objects.get(email='{EMAIL}')); "
        "print(c.cookies['sessionid'].value)"
    )
    return bench.manage(env, "shell", "-c", code).strip().splitlines()[-1]


# --- the baseline: straight to the simulator ------------------------------------------------------


async def direct_stream(session: aiohttp.ClientSession, url: str, model: str, tokens: int, tally: Tally) -> None:
    body = {"model": model, "messages": PROMPT, "stream": True, "max_tokens": tokens}
    headers = {"Authorization": f"Bearer {bench.UPSTREAM_KEY}"}
    started = time.perf_counter()
    first = None
    try:
        async with session.post(url, json=body, headers=headers) as response:
            if response.status != 200:
                tally.error(f"http {response.status}")
                return
            async for chunk in response.content.iter_any():
                if first is None and b'"content":"' in chunk and b'"content":""' not in chunk:
                    first = time.perf_counter()
        tally.completed += 1
        if first is not None:
            tally.ttft_ms.append((first - started) * 1000)
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.error(type(exc).__name__)


async def baseline(upstream: str, model: str, streams: int, tokens: int) -> Tally:
    """The same streams, the same model at the provider the gateway picks (its cheapest endpoint)."""
    tally = Tally()
    provider, upstream_model = bench.cheapest_endpoint(model) or (bench.FALLBACK_PROVIDER, model)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        url = f"{upstream}/p/{provider}/v1/chat/completions"
        await asyncio.gather(*(direct_stream(session, url, upstream_model, tokens, tally) for _ in range(streams)))
    return tally


# --- the chatroom: sockets ------------------------------------------------------------------------------


async def one_socket(url: str, origin: str, cookie: str, model: str, columns: int, tokens: int, tally: Tally,
                     connected: asyncio.Event, go: asyncio.Event, ready: list[int]) -> None:
    try:
        async with connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"},
                           max_size=2**24, open_timeout=60, ping_interval=None) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "ready":
                tally.error(f"not ready: {hello}")
                return
            ready[0] += 1
            if ready[0] == ready[1]:
                connected.set()
            await go.wait()
            frame = {"type": "send", "columns": [
                {"id": f"c{i}", "model": model, "messages": PROMPT, "max_tokens": tokens} for i in range(columns)]}
            started = time.perf_counter()
            await ws.send(json.dumps(frame))
            received = 1
            open_columns = {f"c{i}" for i in range(columns)}
            first_seen: set[str] = set()
            while open_columns:
                message = json.loads(await ws.recv())
                received += 1
                if received % ACK_EVERY == 0:
                    await ws.send(json.dumps({"type": "ack", "frames": received}))
                kind, column = message.get("type"), message.get("column")
                if kind == "chunks" and column not in first_seen:
                    content = [c for c in message["data"] if (c.get("choices") or [{}])[0].get("delta", {}).get("content")]
                    if content:
                        first_seen.add(column)
                        tally.ttft_ms.append((time.perf_counter() - started) * 1000)
                        tally.first_wall[content[0]["id"]] = time.time()
                elif kind == "done":
                    open_columns.discard(column)
                    if message["usage"]["completion_tokens"] != tokens:
                        tally.error("wrong completion tokens")
                    else:
                        tally.completed += 1
                elif kind == "error":
                    open_columns.discard(column)
                    tally.error(f"error frame {message['error'].get('code')}")
    except Exception as exc:  # a failed socket is an error of the run, whatever its kind
        tally.error(type(exc).__name__)
        if not connected.is_set():
            ready[0] += 1
            if ready[0] == ready[1]:
                connected.set()


async def chatroom(port: int, cookie: str, model: str, sockets: int, columns: int, tokens: int,
                   on_tick) -> Tally:
    tally = Tally()
    url = f"ws://{bench.HOST}:{port}/ws/chat"
    origin = f"http://{bench.HOST}:{port}"
    connected, go = asyncio.Event(), asyncio.Event()
    ready = [0, sockets]
    tasks = [asyncio.create_task(one_socket(url, origin, cookie, model, columns, tokens, tally, connected, go, ready))
             for _ in range(sockets)]
    await asyncio.wait_for(connected.wait(), 120)
    go.set()  # every socket sends at once: sockets × columns concurrent streams
    pending = set(tasks)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.5)
        on_tick()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The chatroom socket under load: one Daphne worker.")
    parser.add_argument("--sockets", type=int, default=125)
    parser.add_argument("--models", type=int, default=4, help="columns per socket (at most 4)")
    parser.add_argument("--tokens-per-second", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=200, help="completion tokens per stream")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="the simulator's time to the first token")
    parser.add_argument("--model", default=bench.DEFAULT_MODEL)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--database-url", default=bench.BENCH_DATABASE_URL.replace("openrouter_bench", "openrouter_chatroom_bench"))
    parser.add_argument("--redis-url", default=bench.BENCH_REDIS_URL)
    opts = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, bench.raise_on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="openrouter-chatroom-bench-"))
    procs = bench.Processes(tmp)
    streams = opts.sockets * opts.models
    try:
        sim_port = bench.free_port()
        config = tmp / "simulator.json"
        config.write_text(json.dumps({
            "default": {"latency_ms": opts.latency_ms, "tokens_per_second": opts.tokens_per_second,
                        "completion_tokens": opts.tokens},
            "providers": {}}))
        procs.start("simulator", [bench.PYTHON, "-m", "routing.simulator", "--host", bench.HOST, "--port", str(sim_port),
                                  "--config", str(config)], dict(os.environ))
        bench.wait_for_port(procs, "simulator", sim_port, bench.SERVER_START_TIMEOUT)
        upstream = f"http://{bench.HOST}:{sim_port}"
        env = bench.gateway_env("pg-redis", tmp, upstream)
        env.update({"DATABASE_URL": opts.database_url, "REDIS_URL": opts.redis_url, "COUNTER_PREFIX": "chatbench"})
        bench.prepare_gateway(env)  # migrations, catalog, a funded bench@example.com
        cookie = session_cookie(env)
        port = bench.free_port()
        procs.start("daphne", bench.gateway_command("daphne", port), env)
        bench.wait_for_port(procs, "daphne", port, bench.SERVER_START_TIMEOUT)
        time.sleep(1.0)
        pid = procs.running["daphne"].pid
        rss_before = rss_mb(pid) or 0.0
        print(f"chatroom bench: {opts.sockets} sockets × {opts.models} models = {streams} streams, "
              f"{opts.tokens} tokens at {opts.tokens_per_second:g} tok/s, first token after {opts.latency_ms:g} ms; "
              f"Daphne (1 process), PostgreSQL + Redis", flush=True)

        direct = None
        if not opts.skip_baseline:
            asyncio.run(baseline(upstream, opts.model, 1, opts.tokens))  # warm-up
            direct = asyncio.run(baseline(upstream, opts.model, streams, opts.tokens))
            print(f"baseline (straight to the simulator): {direct.completed}/{streams} streams, "
                  f"errors {direct.error_count} {direct.errors}", flush=True)

        peak = [rss_before]
        last_print = [time.monotonic()]

        def tick() -> None:
            mb = rss_mb(pid)
            if mb is not None:
                peak[0] = max(peak[0], mb)
            if time.monotonic() - last_print[0] >= 5:
                last_print[0] = time.monotonic()
                print(f"  daphne rss {mb:.1f} MB", flush=True)

        # warm-up: caches (catalog, session key info, endpoint health) and the upstream pool filled once
        warm = asyncio.run(chatroom(port, cookie, opts.model, 1, 1, opts.tokens, lambda: None))
        if warm.error_count:
            raise bench.SetupError(f"the warm-up stream failed: {warm.errors}")
        sockets = asyncio.run(chatroom(port, cookie, opts.model, opts.sockets, opts.models, opts.tokens, tick))
        time.sleep(2.0)
        rss_after = rss_mb(pid) or 0.0
        relay, in_gateway = relay_delays_ms(env, tmp, sockets.first_wall)
        ledger = bench.manage(env, "check_ledger").strip().splitlines()
    except bench.SetupError as exc:
        print(f"chatroom bench failed to start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    socket_p50, socket_p95 = percentile(sockets.ttft_ms, 0.5), percentile(sockets.ttft_ms, 0.95)
    direct_p50 = percentile(direct.ttft_ms, 0.5) if direct else None
    direct_p95 = percentile(direct.ttft_ms, 0.95) if direct else None
    added = socket_p50 - direct_p50 if socket_p50 is not None and direct_p50 is not None else None
    print(f"\nstreams over the socket: {sockets.completed}/{streams} complete, errors {sockets.error_count} {sockets.errors}")
    print(f"daphne rss: before {rss_before:.1f} MB, peak {peak[0]:.1f} MB, after {rss_after:.1f} MB")
    print(f"first token over the socket: p50 {ms(socket_p50)} ms, p95 {ms(socket_p95)} ms"
          + (f" (mean {statistics.fmean(sockets.ttft_ms):.1f})" if sockets.ttft_ms else ""))
    print(f"first token straight from the simulator: p50 {ms(direct_p50)} ms, p95 {ms(direct_p95)} ms")
    print(f"added by the gateway and the socket at p50: {ms(added)} ms (planning, credit hold, upstream connect, relay)")
    relay_p50, relay_p95 = percentile(relay, 0.5), percentile(relay, 0.95)
    print(f"  of which inside the gateway call, from its start to the simulator's first token: "
          f"p50 {ms(percentile(in_gateway, 0.5))} ms")
    print(f"first token over the socket after the gateway received the simulator's first token: "
          f"p50 {ms(relay_p50)} ms, p95 {ms(relay_p95)} ms ({len(relay)} streams)")
    print("check_ledger: " + (ledger[-1] if ledger else "(no output)"))
    errors = sockets.error_count + (sockets.completed != streams)
    print(f"CHATROOM streams={streams} errors={sockets.error_count} daphne_peak_rss_mb={peak[0]:.1f} "
          f"ttft_socket_p50_ms={ms(socket_p50)} ttft_direct_p50_ms={ms(direct_p50)} added_p50_ms={ms(added)} "
          f"relay_p50_ms={ms(relay_p50)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
