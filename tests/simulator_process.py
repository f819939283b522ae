"""Run the provider simulator (``python -m routing.simulator``) as a real subprocess in tests.

Usage::

    with SimulatorProcess({"providers": {"openai": {"latency_ms": 5}}}) as sim:
        client = OpenAI(base_url=sim.base_url("openai"), api_key="x")
        sim.set("openai", fail="503", fail_count=1)
        ...
        assert sim.stats("openai")["completed"] == 1

The simulator binds a free port (``--port 0``) and reports it through a port file, so there is
no race between picking a port and binding it. ``start()`` waits for ``/_control/health``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATS_KEYS = ("requests", "completed", "failed", "cancelled", "tokens_emitted")


class SimulatorError(RuntimeError):
    """The simulator did not start, or a control call failed."""


class SimulatorProcess:
    """A provider simulator subprocess with a small client for its control API."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        seed: int = 0,
        startup_timeout: float = 15.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.seed = seed
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._client: httpx.Client | None = None
        self._stderr: BinaryIO | None = None
        self.stderr_output = ""  # what the process wrote to stderr, kept after stop()

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> SimulatorProcess:
        if self.process is not None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="provider-sim-")
        tmp = Path(self._tmpdir.name)
        port_file = tmp / "port"
        command = [sys.executable, "-m", "routing.simulator", "--host", self.host, "--port", "0"]
        command += ["--port-file", str(port_file), "--seed", str(self.seed), *self.extra_args]
        if self.config is not None:
            config_path = tmp / "config.json"
            config_path.write_text(json.dumps(self.config))
            command += ["--config", str(config_path)]
        self._stderr = open(tmp / "stderr.log", "wb")  # closed in stop()
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=self._stderr, env=self._env()
        )
        try:
            self.port = self._wait_for_port(port_file)
            self._client = httpx.Client(base_url=self.url, timeout=10.0)
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit promptly) and clean up."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            self.process = None
        self.stderr_output = self._stderr_text() or self.stderr_output
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        return env

    def _stderr_text(self) -> str:
        if self._tmpdir is None:
            return ""
        try:
            return (Path(self._tmpdir.name) / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SimulatorError(f"simulator exited with code {self.process.returncode}:\n{self._stderr_text()}")

    def _wait_for_port(self, port_file: Path) -> int:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                return int(port_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.02)
        raise SimulatorError(f"simulator did not bind within {self.startup_timeout}s:\n{self._stderr_text()}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.client.get("/_control/health", timeout=1.0).json().get("ok") is True:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.02)
        raise SimulatorError(f"simulator not healthy within {self.startup_timeout}s:\n{self._stderr_text()}")

    # --- addresses ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:41234`` (also the gateway's PROVIDER_SIMULATOR_URL)."""
        if self.port is None:
            raise SimulatorError("simulator is not running")
        return f"http://{self.host}:{self.port}"

    def base_url(self, slug: str) -> str:
        """OpenAI-compatible base URL of one simulated provider."""
        return f"{self.url}/p/{slug}/v1"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise SimulatorError("simulator is not running")
        return self._client

    # --- control API ----------------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, path, json=body)
        if response.status_code >= 400:
            raise SimulatorError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def settings(self, slug: str) -> dict[str, Any]:
        """Current effective settings of a provider (plus ``fail_remaining``)."""
        return self._control("GET", f"/_control/providers/{slug}")

    def set(self, slug: str, **settings: Any) -> dict[str, Any]:
        """Replace a provider's settings (PUT): unspecified keys fall back to the defaults."""
        return self._control("PUT", f"/_control/providers/{slug}", settings)

    def patch(self, slug: str, **settings: Any) -> dict[str, Any]:
        """Merge settings into a provider's current ones (PATCH)."""
        return self._control("PATCH", f"/_control/providers/{slug}", settings)

    def set_default(self, **settings: Any) -> dict[str, Any]:
        """Replace the default layer under every provider."""
        return self._control("PUT", "/_control/default", settings)

    def reset(self) -> None:
        """Back to the start-up config; stats and last requests cleared."""
        self._control("POST", "/_control/reset")

    def stats(self, slug: str | None = None) -> Any:
        """All stats, or one provider's (zeros when it has seen no request)."""
        data = self._control("GET", "/_control/stats")
        if slug is None:
            return data
        return data.get(slug) or dict.fromkeys(STATS_KEYS, 0)

    def wait_for_stats(
        self, slug: str, predicate: Callable[[dict[str, int]], bool], timeout: float = 5.0
    ) -> dict[str, int]:
        """Poll one provider's stats until ``predicate`` holds; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(slug)
            if predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise SimulatorError(f"stats of {slug!r} did not reach the expected state: {stats}")
            time.sleep(0.02)

    def last_request(self, slug: str) -> dict[str, Any] | None:
        """The last request body the provider received, or None."""
        response = self.client.get(f"/_control/last_request/{slug}")
        return None if response.status_code == 404 else response.json()

    def last_headers(self, slug: str) -> dict[str, str] | None:
        """The headers of that last request, or None."""
        response = self.client.get(f"/_control/last_headers/{slug}")
        return None if response.status_code == 404 else response.json()
