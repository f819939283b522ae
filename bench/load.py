"""A small closed-loop HTTP/1.1 load generator that also measures streaming time to first byte.

Each of ``--concurrency`` workers holds one keep-alive connection (raw asyncio streams,
uvloop when installed) and sends the same hand-written POST request back to back. Responses
are framed by ``Content-Length`` or chunked transfer encoding (or read to EOF). For a
streaming request (the body has ``"stream": true``) it records when the first ``data:``
event of the body arrives (TTFB) and when the stream ends, and counts the request as good
only if the status is 200 and the body ends with ``data: [DONE]``; a non-streaming request is
good if the status is 200 and the body holds ``"choices"`` (``"output"``: a Responses answer).

Requests run for ``--warmup`` seconds unrecorded, then ``--duration`` seconds recorded.
The result (latency percentiles, TTFB percentiles, req/s, errors) is printed as one JSON
object on stdout. ``--tool wrk`` runs ``wrk`` instead for cross-checking (no TTFB).

Run it in its own process, never inside a server under test: it is CPU-bound.

    python bench/load.py http://127.0.0.1:8000/api/v1/chat/completions \\
        --body '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}' \\
        -H 'Authorization: Bearer sk-...' -c 16 -d 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DURATION = float(os.environ.get("BENCH_DURATION", "5"))
ERROR_PAUSE_S = 0.01  # back-off after a failed connection, so a dead server is not spun on


class ProtocolError(Exception):
    """The response is not well-formed HTTP/1.x."""


@dataclass(frozen=True)
class Job:
    """What to send, where, how hard and for how long."""

    host: str
    port: int
    request: bytes
    stream: bool
    concurrency: int
    duration: float
    warmup: float
    timeout: float


@dataclass(frozen=True)
class Response:
    """One parsed response; ``first_data_at`` is when the first SSE ``data:`` arrived."""

    status: int
    body: bytes
    first_data_at: float | None
    keep_alive: bool


@dataclass
class Stats:
    """Samples gathered during the recorded window."""

    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    last_done: float = 0.0

    def fail(self, kind: str, at: float, warm_end: float) -> None:
        """Count a failure of ``kind`` that happened at ``at``, unless it was during the warm-up."""
        if at >= warm_end:
            self.errors[kind] += 1
            self.last_done = max(self.last_done, at)


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    """Return host, port and the raw bytes of a keep-alive POST of ``body`` to ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"only http:// URLs are supported: {url}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "User-Agent: bench-load/1",
        "Accept: */*",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Parse a status line and headers into (status, content length, chunked, keep-alive)."""
    status_line, _, header_block = head.partition(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    content_length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in header_block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    return int(rest[:3]), content_length, chunked, keep_alive


async def read_chunked(reader: asyncio.StreamReader, body: bytearray, stream: bool) -> float | None:
    """Read a chunked body into ``body``; return when the first ``data:`` arrived (streams)."""
    first: float | None = None
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return first
        chunk = await reader.readexactly(size + 2)
        body += chunk[:-2]
        if stream and first is None and b"data:" in body:
            first = time.perf_counter()


async def read_plain(reader: asyncio.StreamReader, body: bytearray, stream: bool, length: int | None) -> float | None:
    """Read a body framed by ``length`` (or by EOF when None), noting the first ``data:``."""
    first: float | None = None
    remaining = -1 if length is None else length
    while remaining:
        piece = await reader.read(65536 if remaining < 0 else min(remaining, 65536))
        if not piece:
            if remaining > 0:
                raise asyncio.IncompleteReadError(bytes(body), length)
            return first
        body += piece
        if remaining > 0:
            remaining -= len(piece)
        if stream and first is None and b"data:" in body:
            first = time.perf_counter()
    return first


async def read_response(reader: asyncio.StreamReader, stream: bool) -> Response:
    """Read one whole response from ``reader``."""
    status, length, chunked, keep_alive = parse_head(await reader.readuntil(b"\r\n\r\n"))
    body = bytearray()
    if chunked:
        first = await read_chunked(reader, body, stream)
    elif length is not None and not stream:
        body += await reader.readexactly(length)
        first = None
    else:
        first = await read_plain(reader, body, stream, length)
        keep_alive = keep_alive and length is not None
    return Response(status, bytes(body), first, keep_alive)


def judge(response: Response, stream: bool) -> str | None:
    """Return why ``response`` is an error, or None if it is a good answer."""
    if response.status != 200:
        return f"status {response.status}"
    if not stream:  # a chat completion, an Anthropic Message (/messages) or a Response (/responses)
        good = (b'"choices"', b'"type":"message"', b'"output"')
        return None if any(marker in response.body for marker in good) else "malformed body"
    if response.first_data_at is None:
        return "stream without data"
    end = response.body.rstrip()
    if not end.endswith(b"[DONE]") and not end.endswith(b'{"type":"message_stop"}'):
        return "stream without [DONE] (or message_stop)"
    return None


class Connection:
    """One keep-alive connection that reconnects lazily after a failure or a close."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes, stream: bool) -> Response:
        """Send ``request`` and read its response, connecting first if needed."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        reader, writer = self.streams
        writer.write(request)
        response = await read_response(reader, stream)
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        """Drop the connection, if any."""
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def worker(job: Job, stats: Stats, warm_end: float, end: float) -> None:
    """Send requests back to back until ``end``.

    A good response counts if it started after ``warm_end``; a failure counts if it happened
    after ``warm_end``, so a request that hangs from the warm-up on is not lost.
    """
    connection = Connection(job.host, job.port)
    while (start := time.perf_counter()) < end:
        try:
            async with asyncio.timeout(job.timeout):
                response = await connection.exchange(job.request, job.stream)
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ProtocolError,
            ValueError,
        ) as exc:
            connection.close()
            stats.fail(type(exc).__name__, time.perf_counter(), warm_end)
            await asyncio.sleep(ERROR_PAUSE_S)
            continue
        done = time.perf_counter()
        error = judge(response, job.stream)
        if error:
            stats.fail(error, done, warm_end)
            continue
        if start < warm_end:
            if done > end:  # began in the warm-up and outlasted the whole window
                stats.fail("outlasted the window", done, warm_end)
            continue
        stats.last_done = max(stats.last_done, done)
        stats.latencies.append(done - start)
        if response.first_data_at is not None:
            stats.ttfbs.append(response.first_data_at - start)
    connection.close()


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list, in milliseconds."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1] * 1000, 3)


def summarize(job: Job, stats: Stats, measure_start: float) -> dict[str, Any]:
    """Turn the samples into the reported figures."""
    latencies, ttfbs = sorted(stats.latencies), sorted(stats.ttfbs)
    elapsed = max(stats.last_done - measure_start, 1e-9)
    return {
        "tool": "python",
        "concurrency": job.concurrency,
        "stream": job.stream,
        "duration_s": round(elapsed, 3),
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "ttfb_p50_ms": percentile(ttfbs, 50),
        "ttfb_p90_ms": percentile(ttfbs, 90),
        "ttfb_p99_ms": percentile(ttfbs, 99),
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors),
    }


async def run_job(job: Job) -> dict[str, Any]:
    """Run the warm-up and the recorded window; return the summary."""
    stats = Stats()
    warm_end = time.perf_counter() + job.warmup
    end = warm_end + job.duration
    await asyncio.gather(*(worker(job, stats, warm_end, end) for _ in range(job.concurrency)))
    return summarize(job, stats, warm_end)


def run_python(job: Job) -> dict[str, Any]:
    """Run ``job`` on uvloop when it is installed, else on the default event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_job(job))
    return uvloop.run(run_job(job))


WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_ms(text: str) -> float:
    """Convert a wrk duration such as ``812.00us`` or ``1.20ms`` to milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(number) * WRK_UNITS_MS[unit], 3)


def wrk_script(body: bytes, headers: list[str]) -> str:
    """A wrk Lua script that POSTs ``body`` with ``headers``."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = [==[{body.decode()}]==]",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for header in headers:
        name, _, value = header.partition(":")
        lines.append(f"wrk.headers[ [==[{name.strip()}]==] ] = [==[{value.strip()}]==]")
    return "\n".join(lines) + "\n"


def parse_wrk(output: str) -> dict[str, Any]:
    """Pull percentiles, req/s and errors out of ``wrk --latency`` output."""
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "requests": int(total.group(1)) if total else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": wrk_ms(pct["50"]) if "50" in pct else None,
        "p90_ms": wrk_ms(pct["90"]) if "90" in pct else None,
        "p99_ms": wrk_ms(pct["99"]) if "99" in pct else None,
        "ttfb_p50_ms": None,
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def run_wrk(url: str, body: bytes, headers: list[str], job: Job) -> dict[str, Any]:
    """Cross-check with wrk (one thread, same connections, same durations; no TTFB)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(body, headers))
    try:
        base = [wrk, "-t1", f"-c{job.concurrency}", "-s", script.name]
        if job.warmup >= 0.5:
            subprocess.run([*base, f"-d{max(1, round(job.warmup))}s", url], capture_output=True, check=False)
        done = subprocess.run(
            [*base, f"-d{max(1, round(job.duration))}s", "--latency", url], capture_output=True, text=True, check=True
        )
    finally:
        os.unlink(script.name)
    return {"tool": "wrk", "concurrency": job.concurrency, "stream": job.stream, **parse_wrk(done.stdout)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Closed-loop HTTP/1.1 POST load generator with SSE TTFB.")
    parser.add_argument("url", help="http://host:port/path to POST to")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--body", help='JSON request body; streaming if it has "stream": true')
    source.add_argument("--body-file", help="file holding the JSON request body")
    parser.add_argument("-H", "--header", action="append", default=[], help="extra header 'Name: value'")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=DEFAULT_DURATION, help="recorded seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    parser.add_argument("--tool", choices=["python", "wrk"], default="python")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.body_file:
        with open(args.body_file, "rb") as handle:
            body = handle.read()
    else:
        body = args.body.encode()
    stream = bool(json.loads(body).get("stream"))
    host, port, request = build_request(args.url, body, args.header)
    job = Job(host, port, request, stream, args.concurrency, args.duration, args.warmup, args.timeout)
    result = run_wrk(args.url, body, args.header, job) if args.tool == "wrk" else run_python(job)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
