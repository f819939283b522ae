"""Benchmark the gateway against the upstream floor, Portkey's gateway and LiteLLM's proxy, in one run.

Targets, one at a time, all against the same upstream (the provider simulator at zero delay,
or ``bench/mock_upstream.py`` when the simulator is not there):

* ``direct``              the upstream itself (the floor);
* ``portkey``             Portkey's gateway (``@portkey-ai/gateway``, Node, one process; npm installs it
                          into ``.bench-node`` when missing), sent to the upstream with
                          ``x-portkey-provider: openai`` and ``x-portkey-custom-host``;
* ``litellm``             LiteLLM's proxy (``litellm[proxy]==1.108.7`` in ``.bench-venv``, one worker);
* ``gateway-daphne``      the gateway's ASGI app served by Daphne (one process);
* ``gateway-uvicorn``     the same app served by uvicorn (uvloop + httptools, one process);
* ``gateway-uvicorn-2p``  uvicorn with two worker processes (PostgreSQL + Redis only).

The gateway runs in two setups: ``sqlite`` (the embedded default: SQLite, in-process
counters) and ``pg-redis`` (the deployed one: ``BENCH_DATABASE_URL``, default database
``openrouter_bench``, recreated; ``BENCH_REDIS_URL``, default db 14, only keys under the
``bench:`` prefix are touched). Each target is measured non-streaming and streaming at
concurrency 1 and 16 by ``bench/load.py`` in its own process, and again with ``wrk``. A table
is printed, raw figures go to ``var/bench/results.json``, and the last line is::

    SUMMARY added_p50_ms=<x> stream_ttfb_added_p50_ms=<y> rps_c16=<z> ... portkey_rps_c16=<v> litellm_rps_c16=<w>

(uvicorn, one process, PostgreSQL + Redis). Everything started is stopped at the end.

Run: ``.venv/bin/python bench/run.py [--only direct,portkey,gateway] [--setups pg-redis] [--duration 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BENCH_VENV = ROOT / ".bench-venv"
LITELLM_VERSION = "1.108.7"
LITELLM_FORBIDDEN = {"1.82.7", "1.82.8"}  # malicious releases: never install or run these
CATALOG = ROOT / "routing" / "catalog" / "default_catalog.json"
RESULTS = ROOT / "var" / "bench" / "results.json"
HOST = "127.0.0.1"
PROMPT = "Say hello in five words."
CONCURRENCIES = (1, 16)
MODES = ("non-stream", "stream")
MESSAGES_MODES = ("messages", "messages-stream")  # the gateway's Anthropic Messages surface (/api/v1/messages)
TARGETS = ("direct", "portkey", "litellm", "gateway-daphne", "gateway-uvicorn", "gateway-uvicorn-2p", "gateway-responses")
DEFAULT_MODEL = "meta-llama/llama-3.3-70b-instruct"
FALLBACK_PROVIDER = "deepinfra"
UPSTREAM_KEY = "sk-bench-upstream"  # the simulator wants some bearer token, any will do
UPSTREAM_AUTH = (f"Authorization: Bearer {UPSTREAM_KEY}",)
LITELLM_START_TIMEOUT = 90.0
SERVER_START_TIMEOUT = 30.0


class SetupError(RuntimeError):
    """A target could not be prepared or started; its rows are skipped."""


# --- Processes ------------------------------------------------------------------------------


@dataclass
class Processes:
    """Servers started by this run; each in its own process group, all stopped at the end."""

    log_dir: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in a new session, its output going to ``<log_dir>/<name>.log``."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.running[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a server's log."""
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str) -> None:
        """Stop one server: SIGTERM to its process group, SIGKILL if it lingers."""
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def free_port() -> int:
    """A TCP port that is free right now on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(procs: Processes, name: str, port: int, timeout: float) -> None:
    """Wait until ``port`` accepts connections; fail early if the server exits."""
    deadline = time.monotonic() + timeout
    proc = procs.running[name]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SetupError(f"{name} did not open port {port} within {timeout:.0f} s:\n{procs.log_tail(name)}")


@contextmanager
def server(
    procs: Processes,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    timeout: float = SERVER_START_TIMEOUT,
    cwd: Path = ROOT,
) -> Iterator[None]:
    """Run a server for the duration of the block."""
    procs.start(name, cmd, env, cwd)
    try:
        wait_for_port(procs, name, port, timeout)
        yield
    finally:
        procs.stop(name)


# --- Requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where and how to send the benchmark's chat completion."""

    name: str
    url: str
    model: str
    headers: tuple[str, ...] = ()
    api: str = "chat"  # "chat", "responses" (the OpenAI Responses API) or "messages" (Anthropic's Messages API)

    def body(self, stream: bool) -> str:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 16,
        }
        if self.api == "responses":
            payload = {"model": self.model, "input": PROMPT, "max_output_tokens": 16}
        if self.api == "messages":
            payload["system"] = "You are a benchmark."
        if stream:
            payload["stream"] = True
        return json.dumps(payload)


def probe(target: Target, modes: tuple[str, ...] = ("non-stream", "stream")) -> None:
    """Send one request per mode; raise SetupError unless each is good."""
    for stream in (mode.endswith("stream") and mode != "non-stream" for mode in modes):
        request = urllib.request.Request(
            target.url, data=target.body(stream).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        for header in target.headers:
            key, _, value = header.partition(":")
            request.add_header(key.strip(), value.strip())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise SetupError(f"{target.name}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise SetupError(f"{target.name}: {exc}") from exc
        if target.api == "messages":
            expected = b"event: message_stop" if stream else b'"type":"message"'
        else:
            expected = b"[DONE]" if stream else (b'"output"' if target.api == "responses" else b'"choices"')
        if expected not in body:
            raise SetupError(f"{target.name}: unexpected {'stream' if stream else 'body'}: {body[:300]!r}")


def measure(target: Target, stream: bool, concurrency: int, opts: argparse.Namespace, tool: str) -> dict[str, Any]:
    """Run bench/load.py (its own process) against ``target`` and return its figures."""
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "load.py"),
        target.url,
        "--body",
        target.body(stream),
        "-c",
        str(concurrency),
        "-d",
        str(opts.duration),
        "--warmup",
        str(opts.warmup),
        "--tool",
        tool,
    ]
    for header in target.headers:
        cmd += ["-H", header]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SetupError(f"load generator failed for {target.name}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_target(
    target: Target, opts: argparse.Namespace, *, setup: str = "-", processes: int = 1, modes: tuple[str, ...] = MODES
) -> list[dict[str, Any]]:
    """Probe ``target``, then measure every mode × concurrency with each load generator."""
    probe(target, modes)
    rows = []
    tools = ("python", "wrk") if opts.wrk and shutil.which("wrk") else ("python",)
    for mode in modes:
        for concurrency in CONCURRENCIES:
            for tool in tools:
                result = measure(target, mode.endswith("stream") and mode != "non-stream", concurrency, opts, tool)
                row = {"target": target.name, "setup": setup, "procs": processes, "mode": mode, **result}
                print(format_row(row), flush=True)
                rows.append(row)
    return rows


# --- Upstream -------------------------------------------------------------------------------


def simulator_available() -> bool:
    return (ROOT / "routing" / "simulator" / "__main__.py").exists()


def start_upstream(procs: Processes, opts: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    """Start the simulator (or the mock); return (kind, base URL) once it answers."""
    kinds = {
        "auto": ["simulator", "mock"] if simulator_available() else ["mock"],
        "simulator": ["simulator"],
        "mock": ["mock"],
    }[opts.upstream]
    for kind in kinds:
        port = free_port()
        base = f"http://{HOST}:{port}"
        if kind == "simulator":
            config = tmp / "simulator.json"
            config.write_text(json.dumps({"default": {"latency_ms": 0, "tokens_per_second": 0}, "providers": {}}))
            cmd = [PYTHON, "-m", "routing.simulator", "--host", HOST, "--port", str(port), "--config", str(config)]
        else:
            cmd = [PYTHON, str(ROOT / "bench" / "mock_upstream.py"), "--host", HOST, "--port", str(port)]
        try:
            procs.start("upstream", cmd, dict(os.environ))
            wait_for_port(procs, "upstream", port, SERVER_START_TIMEOUT)
            probe(Target("upstream", f"{base}/p/{FALLBACK_PROVIDER}/v1/chat/completions", "probe", UPSTREAM_AUTH))
            return kind, base
        except SetupError as exc:
            procs.stop("upstream")
            if kind == kinds[-1]:
                raise
            print(f"! the simulator did not work, falling back to bench/mock_upstream.py: {exc}", file=sys.stderr)
    raise AssertionError("unreachable")


def cheapest_endpoint(model: str) -> tuple[str, str] | None:
    """(provider slug, upstream model id) of the model's cheapest endpoint in the catalog file.

    Tolerant of the catalog's layout: a list of models (or ``{"models": [...]}``) whose
    entries have ``slug``/``id`` and ``endpoints`` with ``provider``/``provider_slug``/``tag``,
    ``upstream_model_id`` and ``price_prompt``/``price_completion`` or ``pricing``.
    """
    try:
        data = json.loads(CATALOG.read_text())
    except (OSError, ValueError):
        return None
    models = data.get("models", []) if isinstance(data, dict) else data
    entry = next((m for m in models if isinstance(m, dict) and model in (m.get("slug"), m.get("id"))), None)
    endpoints = [e for e in (entry or {}).get("endpoints", []) if isinstance(e, dict)]
    if not endpoints:
        return None

    def price(endpoint: dict[str, Any]) -> float:
        pricing = endpoint.get("pricing") or {}
        prompt = endpoint.get("price_prompt", pricing.get("prompt", 0))
        completion = endpoint.get("price_completion", pricing.get("completion", 0))
        try:
            return float(prompt) + float(completion)
        except (TypeError, ValueError):
            return float("inf")

    best = min(endpoints, key=price)
    provider = best.get("provider_slug") or best.get("provider") or str(best.get("tag", "")).split("/")[0]
    if isinstance(provider, dict):
        provider = provider.get("slug")
    if not provider:
        return None
    return str(provider), str(best.get("upstream_model_id") or model)


# --- Gateway --------------------------------------------------------------------------------

# The two setups measured: the embedded default, and the deployed one (PostgreSQL + Redis).
SETUPS = ("sqlite", "pg-redis")
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/openrouter_bench")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
COUNTER_PREFIX = "bench"  # every Redis key the gateway writes starts with it; the reset deletes only those
# Served as in production (DEBUG off), where the public development secrets are refused: this run's own.
RUN_SECRETS = {
    "SECRET_KEY": secrets.token_urlsafe(40),
    "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
    "CRYPTO_WEBHOOK_SECRET": secrets.token_hex(16),
}


def gateway_env(setup: str, tmp: Path, upstream: str) -> dict[str, str]:
    """The gateway's environment: isolated SQLite, or the bench PostgreSQL database and Redis."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    env.update(
        {
            "SQLITE_PATH": str(tmp / f"bench-{setup}.sqlite3"),
            "VAR_DIR": str(tmp),
            "PROVIDER_SIMULATOR_URL": upstream,
            "DJANGO_SETTINGS_MODULE": "openrouter_site.settings",
            "COUNTER_PREFIX": COUNTER_PREFIX,
            "DEBUG": "0",
            **RUN_SECRETS,
        }
    )
    if setup == "pg-redis":
        env["DATABASE_URL"] = BENCH_DATABASE_URL
        env["REDIS_URL"] = BENCH_REDIS_URL
    return env


def reset_external_stores(env: dict[str, str]) -> None:
    """Start from an empty bench database (PostgreSQL) and no bench keys in Redis, when used."""
    try:
        if "DATABASE_URL" in env:
            import psycopg

            url = urlsplit(env["DATABASE_URL"])
            name = url.path.lstrip("/")
            admin = url._replace(scheme="postgresql", path="/postgres").geturl()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        if "REDIS_URL" in env:
            import redis

            client = redis.Redis.from_url(env["REDIS_URL"])
            for key in client.scan_iter(f"{env.get('COUNTER_PREFIX', COUNTER_PREFIX)}:*", count=1000):
                client.delete(key)
    except Exception as exc:  # any driver error means the service is not usable
        raise SetupError(f"could not reset the bench PostgreSQL/Redis: {exc}") from exc


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command; return its stdout or raise SetupError with its output."""
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise SetupError(f"manage.py {' '.join(args)} failed:\n" + "\n".join(output[-10:]))
    return done.stdout


def prepare_gateway(env: dict[str, str]) -> str:
    """Migrate, load the catalog, create a funded key; return the key."""
    reset_external_stores(env)
    manage(env, "migrate", "--noinput")
    manage(env, "load_catalog")
    lines = manage(env, "create_api_key", "bench@example.com", "--credits", "1000000").strip().splitlines()
    if not lines:
        raise SetupError("manage.py create_api_key printed nothing")
    return lines[-1].strip()


def gateway_command(server_name: str, port: int, processes: int = 1) -> list[str]:
    """The server's command line: Daphne, or uvicorn (uvloop + httptools) with ``processes`` workers."""
    app = "openrouter_site.asgi:application"
    if server_name == "daphne":
        # -v 0: no access line per request, as uvicorn's --no-access-log (Daphne's default, -v 1, writes one)
        # Daphne as make run starts it (on uvloop: openrouter_site/daphne_server.py)
        return [PYTHON, "-m", "openrouter_site.daphne_server", "-v", "0", "-b", HOST, "-p", str(port), app]
    workers = ["--workers", str(processes)] if processes > 1 else []
    return [
        PYTHON,
        "-m",
        "openrouter_site.uvicorn_server",  # uvicorn, one write per answer (as the Procfile runs it)
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        *workers,
        app,
    ]


# --- Portkey --------------------------------------------------------------------------------

PORTKEY_VERSION = "1.15.2"
NODE_DIR = ROOT / ".bench-node"  # npm installs Portkey's gateway here (ignored by git)
PORTKEY_SCRIPT = NODE_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def portkey_version() -> str | None:
    manifest = PORTKEY_SCRIPT.parent.parent / "package.json"
    try:
        return json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None


def ensure_portkey() -> Path:
    """Make sure .bench-node holds @portkey-ai/gateway@1.15.2 (npm install if not); return its start script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SetupError("node and npm are needed for Portkey's gateway (Debian: apt-get install nodejs npm)")
    if portkey_version() != PORTKEY_VERSION:
        print(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {NODE_DIR} ...", flush=True)
        NODE_DIR.mkdir(exist_ok=True)
        done = subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NODE_DIR),
                f"@portkey-ai/gateway@{PORTKEY_VERSION}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or portkey_version() != PORTKEY_VERSION:
            raise SetupError(f"npm install @portkey-ai/gateway@{PORTKEY_VERSION} failed: {done.stderr.strip()[-300:]}")
    return PORTKEY_SCRIPT


# --- LiteLLM --------------------------------------------------------------------------------


def litellm_version() -> str | None:
    """The litellm version installed in .bench-venv, or None."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_litellm() -> Path:
    """Make sure .bench-venv holds litellm[proxy]==1.108.7 (creating it if needed); return its CLI."""
    version = litellm_version()
    if version in LITELLM_FORBIDDEN:
        raise SetupError(f".bench-venv holds the malicious litellm {version}: delete .bench-venv and rerun")
    if version != LITELLM_VERSION:
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {BENCH_VENV} (a few minutes) ...", flush=True)
        try:
            if not (BENCH_VENV / "bin" / "python").exists():
                subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
            subprocess.run(
                [str(BENCH_VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SetupError(f"could not install litellm[proxy]=={LITELLM_VERSION}: {exc}") from exc
        version = litellm_version()
    if version != LITELLM_VERSION:
        raise SetupError(f"expected litellm {LITELLM_VERSION} in .bench-venv, found {version}")
    return BENCH_VENV / "bin" / "litellm"


def litellm_config(tmp: Path, api_base: str, upstream_model: str, master_key: str) -> Path:
    """Write LiteLLM's proxy config (JSON is valid YAML) and return its path."""
    config = {
        "model_list": [
            {
                "model_name": "bench-model",
                "litellm_params": {"model": f"openai/{upstream_model}", "api_base": api_base, "api_key": UPSTREAM_KEY},
            }
        ],
        # Offline, LiteLLM would retry a Hugging Face tokenizer download (~25 s) on every streamed
        # llama request; with the download disabled it counts tokens with tiktoken.
        "litellm_settings": {"telemetry": False, "drop_params": True, "disable_hf_tokenizer_download": True},
        "general_settings": {"master_key": master_key},
    }
    path = tmp / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def litellm_env() -> dict[str, str]:
    """LiteLLM's environment: offline cost map, no database or Redis of ours."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"})
    return env


# --- Orchestration ------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one benchmark run needs and produces."""

    opts: argparse.Namespace
    procs: Processes
    tmp: Path
    upstream_kind: str = ""
    upstream: str = ""
    provider: str = ""
    upstream_model: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str | SetupError] = field(default_factory=dict)  # per setup: the API key, or why not

    @property
    def direct_url(self) -> str:
        return f"{self.upstream}/p/{self.provider}/v1/chat/completions"

    def attempt(self, name: str, action: Callable[[], list[dict[str, Any]]]) -> None:
        """Run one target's measurements; a SetupError skips the target, not the run."""
        print(f"--- {name}", flush=True)
        try:
            self.rows += action()
        except SetupError as exc:
            self.failures[name] = str(exc)
            print(f"! {name} skipped: {exc}", flush=True)

    def direct(self) -> list[dict[str, Any]]:
        return measure_target(Target("direct", self.direct_url, self.upstream_model, UPSTREAM_AUTH), self.opts)

    def gateway_key(self, setup: str) -> str:
        """Prepare a setup's database once (its servers share it); return the API key."""
        if setup not in self.keys:
            try:
                self.keys[setup] = prepare_gateway(gateway_env(setup, self.tmp, self.upstream))
            except SetupError as exc:
                self.keys[setup] = exc
        key = self.keys[setup]
        if isinstance(key, SetupError):
            raise key
        return key

    def gateway(self, server_name: str, setup: str, processes: int = 1, api: str = "chat") -> list[dict[str, Any]]:
        key = self.gateway_key(setup)
        port = free_port()
        name = f"gateway-{server_name}" + (f"-{processes}p" if processes > 1 else "")
        path = "chat/completions"
        if api != "chat":
            name, path = f"gateway-{api}", api
        target = Target(
            name, f"http://{HOST}:{port}/api/v1/{path}", self.opts.model, (f"Authorization: Bearer {key}",), api
        )
        env = gateway_env(setup, self.tmp, self.upstream)
        with server(self.procs, name, gateway_command(server_name, port, processes), env, port):
            if processes > 1:
                time.sleep(2.0)  # every worker up and warm, not only the first
            rows = measure_target(target, self.opts, setup=setup, processes=processes)
            if self.opts.messages:
                messages = Target(name, f"http://{HOST}:{port}/api/v1/messages", self.opts.model,
                                  (f"x-api-key: {key}",), api="messages")
                rows += measure_target(messages, self.opts, setup=setup, processes=processes, modes=MESSAGES_MODES)
            return rows

    def portkey(self) -> list[dict[str, Any]]:
        script = ensure_portkey()
        port = free_port()
        headers = (
            *UPSTREAM_AUTH,
            "x-portkey-provider: openai",
            f"x-portkey-custom-host: {self.upstream}/p/{self.provider}/v1",
        )
        target = Target("portkey", f"http://{HOST}:{port}/v1/chat/completions", self.upstream_model, headers)
        cmd = ["node", str(script), f"--port={port}", "--headless"]
        with server(self.procs, "portkey", cmd, dict(os.environ), port, cwd=self.tmp):
            try:
                probe(target, ("stream",))
                modes = MODES
            except SetupError as exc:  # it fails streams against OpenAI-compatible custom hosts
                print(f"! portkey: streaming not measured: {str(exc)[:160]}", flush=True)
                modes = ("non-stream",)
            return measure_target(target, self.opts, modes=modes)

    def litellm(self) -> list[dict[str, Any]]:
        cli = ensure_litellm()
        port = free_port()
        master_key = "sk-bench-" + secrets.token_hex(16)
        config = litellm_config(self.tmp, f"{self.upstream}/p/{self.provider}/v1", self.upstream_model, master_key)
        cmd = [str(cli), "--config", str(config), "--host", HOST, "--port", str(port), "--num_workers", "1"]
        target = Target(
            "litellm",
            f"http://{HOST}:{port}/v1/chat/completions",
            "bench-model",
            (f"Authorization: Bearer {master_key}",),
        )
        print(f"starting LiteLLM {LITELLM_VERSION} (up to {LITELLM_START_TIMEOUT:.0f} s) ...", flush=True)
        with server(self.procs, "litellm", cmd, litellm_env(), port, LITELLM_START_TIMEOUT, cwd=self.tmp):
            return measure_target(target, self.opts)

    def execute(self) -> None:
        load = os.getloadavg()[0]
        if load > 0.5:
            print(
                f"! load average is {load:.2f} before starting: other work on this machine will add noise", flush=True
            )
        self.upstream_kind, self.upstream = start_upstream(self.procs, self.opts, self.tmp)
        found = cheapest_endpoint(self.opts.model)
        self.provider, self.upstream_model = found or (FALLBACK_PROVIDER, self.opts.model)
        if self.opts.provider:
            self.provider = self.opts.provider
        print(
            f"upstream: {self.upstream_kind} at {self.upstream}, provider {self.provider}, "
            f"model {self.opts.model} (upstream id {self.upstream_model}); setups: {', '.join(self.opts.setups)}",
            flush=True,
        )
        for name, action in self.plan():
            self.attempt(name, action)

    def plan(self) -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
        """(label, measurement) in the order they run; gateways once per setup."""
        wanted = selected_targets(self.opts)
        steps: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
        for name in wanted:
            if name == "direct":
                steps.append(("direct", self.direct))
            elif name == "portkey":
                steps.append(("portkey", self.portkey))
            elif name == "litellm":
                steps.append(("litellm", self.litellm))
        for setup in self.opts.setups:
            for name in wanted:
                if name == "gateway-daphne":
                    steps.append((f"{name} ({setup})", lambda s=setup: self.gateway("daphne", s)))
                elif name == "gateway-uvicorn":
                    steps.append((f"{name} ({setup})", lambda s=setup: self.gateway("uvicorn", s)))
                elif name == "gateway-responses":  # POST /api/v1/responses through the same gateway
                    steps.append((f"{name} ({setup})", lambda s=setup: self.gateway("uvicorn", s, api="responses")))
                elif name == "gateway-uvicorn-2p" and setup == "pg-redis":  # several processes need Redis
                    steps.append((f"{name} ({setup})", lambda s=setup: self.gateway("uvicorn", s, processes=2)))
        return steps


def selected_targets(opts: argparse.Namespace) -> list[str]:
    """Targets to run, in the fixed order, from --only, --skip-litellm and --skip-portkey."""
    wanted = {t.strip() for t in opts.only.split(",") if t.strip()} if opts.only else set(TARGETS)
    expanded = set()
    for name in wanted:
        matches = [t for t in TARGETS if t == name or t.startswith(name + "-")]
        if not matches:
            raise SystemExit(f"unknown target {name!r}; choose from {', '.join(TARGETS)} or gateway (all three)")
        expanded.update(matches)
    if opts.skip_litellm:
        expanded.discard("litellm")
    if opts.skip_portkey:
        expanded.discard("portkey")
    return [t for t in TARGETS if t in expanded]


# --- Report ---------------------------------------------------------------------------------

COLUMNS = (
    ("target", 18, "target"),
    ("setup", 8, "setup"),
    ("procs", 5, "procs"),
    ("mode", 10, "mode"),
    ("c", 3, "concurrency"),
    ("tool", 6, "tool"),
    ("p50 ms", 8, "p50_ms"),
    ("p90 ms", 8, "p90_ms"),
    ("p99 ms", 8, "p99_ms"),
    ("TTFB p50", 9, "ttfb_p50_ms"),
    ("req/s", 9, "rps"),
    ("errors", 6, "errors"),
)
LEFT_COLUMNS = 6


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 1000 else f"{value:.0f}"
    return str(value)


def format_row(row: dict[str, Any]) -> str:
    parts = []
    for index, (_, width, key) in enumerate(COLUMNS):
        text = cell(row.get(key))
        parts.append(text.ljust(width) if index < LEFT_COLUMNS else text.rjust(width))
    return "  ".join(parts)


def print_table(rows: list[dict[str, Any]], failures: dict[str, str]) -> None:
    header = "  ".join(
        title.ljust(w) if i < LEFT_COLUMNS else title.rjust(w) for i, (title, w, _) in enumerate(COLUMNS)
    )
    print("\n" + header + "\n" + "-" * len(header))
    order = {name: i for i, name in enumerate(TARGETS)}
    setups = {"-": 0, "sqlite": 1, "pg-redis": 2}

    def key(r: dict[str, Any]) -> tuple:
        return (MODES + MESSAGES_MODES).index(r["mode"]), r["concurrency"], setups[r["setup"]], order[r["target"]], r["tool"]

    for row in sorted(rows, key=key):
        print(format_row(row))
    for name, reason in failures.items():
        print(f"{name}: not measured: {reason.splitlines()[0]}")


def figure(
    rows: list[dict[str, Any]],
    target: str,
    mode: str,
    concurrency: int,
    key: str,
    setup: str = "-",
    tool: str = "python",
) -> float | None:
    for row in rows:
        if (row["target"], row["setup"], row["mode"], row["concurrency"], row["tool"]) == (
            target,
            setup,
            mode,
            concurrency,
            tool,
        ):
            return row.get(key)
    return None


def print_matrix(rows: list[dict[str, Any]]) -> None:
    """Non-streaming req/s at c=16, one line per setup: the figure the issue compares."""
    print("\nreq/s, non-streaming, c=16 (python load generator / wrk):")
    peers = ("direct", "portkey", "litellm")
    gateways = ("gateway-daphne", "gateway-uvicorn", "gateway-uvicorn-2p")

    def both(target: str, setup: str) -> str:
        values = [figure(rows, target, "non-stream", 16, "rps", setup, tool) for tool in ("python", "wrk")]
        return " / ".join(cell(v) for v in values)

    print("  " + "  ".join(f"{name:>20}" for name in (*gateways, *peers)))
    for setup in SETUPS:
        line = [f"{both(name, setup):>20}" for name in gateways] + [f"{both(name, '-'):>20}" for name in peers]
        print(f"{setup:>8}  " + "  ".join(line))


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def fmt(value: float | None, digits: int) -> str:
    return "nan" if value is None else f"{value:.{digits}f}"


def summary(rows: list[dict[str, Any]], gateway: str, setup: str) -> dict[str, float | None]:
    """The headline figures for one gateway server in one setup."""
    return {
        "added_p50_ms": difference(
            figure(rows, gateway, "non-stream", 1, "p50_ms", setup), figure(rows, "direct", "non-stream", 1, "p50_ms")
        ),
        "stream_ttfb_added_p50_ms": difference(
            figure(rows, gateway, "stream", 1, "ttfb_p50_ms", setup),
            figure(rows, "direct", "stream", 1, "ttfb_p50_ms"),
        ),
        "rps_c16": figure(rows, gateway, "non-stream", 16, "rps", setup),
        "wrk_rps_c16": figure(rows, gateway, "non-stream", 16, "rps", setup, "wrk"),
        # /messages against the same floor (the upstream answering the same prompt in chat's shape)
        "messages_added_p50_ms": difference(
            figure(rows, gateway, "messages", 1, "p50_ms", setup), figure(rows, "direct", "non-stream", 1, "p50_ms")
        ),
        "messages_stream_ttfb_added_p50_ms": difference(
            figure(rows, gateway, "messages-stream", 1, "ttfb_p50_ms", setup),
            figure(rows, "direct", "stream", 1, "ttfb_p50_ms"),
        ),
    }


def summary_line(label: str, figures: dict[str, float | None]) -> str:
    return label + " " + " ".join(f"{k}={fmt(v, 1 if 'rps' in k else 3)}" for k, v in figures.items())


def write_results(run: Run, summaries: dict[str, dict[str, float | None]]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": run.opts.duration,
        "warmup_s": run.opts.warmup,
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg()[0],
        "upstream": run.upstream_kind,
        "provider": run.provider,
        "model": run.opts.model,
        "upstream_model": run.upstream_model,
        "litellm": LITELLM_VERSION,
        "portkey": PORTKEY_VERSION,
        "setups": run.opts.setups,
        "prompt": PROMPT,
    }
    RESULTS.write_text(
        json.dumps({"meta": meta, "summary": summaries, "results": run.rows, "failures": run.failures}, indent=2) + "\n"
    )


def report(run: Run) -> None:
    print_table(run.rows, run.failures)
    print_matrix(run.rows)
    summaries = {}
    for setup in run.opts.setups:
        for gateway in ("gateway-daphne", "gateway-uvicorn", "gateway-uvicorn-2p"):
            if any(r["target"] == gateway and r["setup"] == setup for r in run.rows):
                summaries[f"{gateway} ({setup})"] = summary(run.rows, gateway, setup)
    # The headline: the production setup (PostgreSQL + Redis) on the recommended server (uvicorn),
    # one process like Portkey's and LiteLLM's here, beside them and the same setup on Daphne.
    setup = "pg-redis" if "pg-redis" in run.opts.setups else run.opts.setups[0]
    headline = summary(run.rows, "gateway-uvicorn", setup)
    headline["daphne_rps_c16"] = figure(run.rows, "gateway-daphne", "non-stream", 16, "rps", setup)
    headline["rps_c16_2proc"] = figure(run.rows, "gateway-uvicorn-2p", "non-stream", 16, "rps", setup)
    headline["portkey_rps_c16"] = figure(run.rows, "portkey", "non-stream", 16, "rps")
    headline["portkey_wrk_rps_c16"] = figure(run.rows, "portkey", "non-stream", 16, "rps", tool="wrk")
    headline["litellm_rps_c16"] = figure(run.rows, "litellm", "non-stream", 16, "rps")
    summaries["headline"] = headline
    write_results(run, summaries)
    print(f"\nraw results: {RESULTS.relative_to(ROOT)}")
    for label, figures in summaries.items():
        if label != "headline":
            print(
                summary_line("SUMMARY_" + label.replace("gateway-", "").replace(" (", "_").rstrip(")").upper(), figures)
            )
    print(f"(SUMMARY: {setup}, uvicorn, 1 process; Portkey 1 process; LiteLLM 1 worker)")
    print(summary_line("SUMMARY", headline))


# --- Entry point ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway vs direct vs Portkey vs LiteLLM benchmark.")
    parser.add_argument(
        "--only",
        help="comma-separated subset of: " + ", ".join(TARGETS) + " (gateway = the three gateway targets)",
    )
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-portkey", action="store_true")
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("BENCH_DURATION", "5")),
        help="recorded seconds per measurement (env BENCH_DURATION; default 5)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each measurement")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="catalog model id the gateway is asked for")
    parser.add_argument(
        "--provider",
        help="simulator provider slug for direct, Portkey and LiteLLM (default: the model's cheapest endpoint)",
    )
    parser.add_argument(
        "--upstream",
        choices=["auto", "simulator", "mock"],
        default="auto",
        help="the routing.simulator, bench/mock_upstream.py, or the simulator if present",
    )
    parser.add_argument(
        "--setups",
        default="sqlite,pg-redis",
        help="gateway setups, comma-separated: sqlite (embedded default), pg-redis "
        "(BENCH_DATABASE_URL, default database openrouter_bench; BENCH_REDIS_URL, default db 14)",
    )
    parser.add_argument("--postgres", action="store_true", help="same as --setups pg-redis (with --redis)")
    parser.add_argument("--redis", action="store_true", help="same as --setups pg-redis (with --postgres)")
    parser.add_argument("--no-wrk", dest="wrk", action="store_false", help="skip the wrk cross-check rows")
    parser.add_argument("--no-messages", dest="messages", action="store_false",
                        help="skip the gateway's /messages rows (Anthropic Messages, streaming and not)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs, database)")
    opts = parser.parse_args(argv)
    opts.setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    if opts.postgres or opts.redis:
        opts.setups = ["pg-redis"]
    unknown = set(opts.setups) - set(SETUPS)
    if unknown or not opts.setups:
        parser.error(f"--setups: choose from {', '.join(SETUPS)}")
    return opts


def raise_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    selected_targets(opts)  # validate --only before starting anything
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="openrouter-bench-"))
    run = Run(opts, Processes(tmp), tmp)
    try:
        run.execute()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except SetupError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        run.procs.stop_all()
        if opts.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
