"""``scripts/run_platform.py`` (what ``make run`` runs) stops completely the way services are stopped.

It is started as an operator would, in a new process group, on free ports, with SQLite in a temporary
directory and no secrets in the environment (a fresh clone), and waited for until it serves. Then the
whole group gets SIGTERM (what docker stop, systemd or CI send), or SIGINT twice 100 ms apart (a
terminal's Ctrl-C forwarded by make): within 15 s no process of that run may be left (every process it
started carries a marker in its environment) and every port must be free again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_SECONDS = 15
START_TIMEOUT_SECONDS = 180  # migrating a fresh SQLite database on a busy 2-core machine
MARKER = "RUN_PLATFORM_TEST_RUN"
# What the suite's own processes have and a fresh clone's `make run` does not.
NOT_INHERITED = {
    "DATABASE_URL", "REDIS_URL", "DEBUG", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
    "CRYPTO_WEBHOOK_SECRET", "CRYPTO_SIMULATED_ENABLED", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_JS_URL",
    "PROVIDER_SIMULATOR_URL", "SQLITE_PATH", "VAR_DIR",
}

pytestmark = pytest.mark.timeout(START_TIMEOUT_SECONDS + 60)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def processes_of_run(run_id: str) -> list[int]:
    """Every live process whose environment carries this run's marker (however it was re-parented)."""
    needle = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


class Platform:
    def __init__(self, tmp_path: Path, *, stripe_port: int | None = None, **extra_env: str) -> None:
        self.run_id = uuid.uuid4().hex
        self.port, self.sim_port, self.stripe_port = free_ports(3)
        self.stripe_port = stripe_port or self.stripe_port
        self.log_path = tmp_path / "run_platform.log"
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(
            VAR_DIR=str(tmp_path / "var"),
            PORT=str(self.port),
            SIMULATOR_PORT=str(self.sim_port),
            STRIPE_PORT=str(self.stripe_port),
            PYTHONUNBUFFERED="1",
            **{MARKER: self.run_id},
            **extra_env,
        )
        self.db_path = tmp_path / "var" / "db.sqlite3"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "scripts/run_platform.py"], cwd=ROOT, env=env, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT,
            )

    @property
    def ports(self) -> list[int]:
        return [self.port, self.sim_port, self.stripe_port]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while "The platform is running." not in self.log():
            assert self.process.poll() is None, f"run_platform.py exited with {self.process.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"run_platform.py did not start:\n{self.log()}"
            time.sleep(0.25)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/accounts/login/", timeout=10) as response:
            assert response.status == 200
        # web, worker, beat, simulator, localstripe (and run_platform itself) are all there
        assert len(processes_of_run(self.run_id)) >= 6, self.log()

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def kill_leftovers(self) -> None:
        for pid in processes_of_run(self.run_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.wait(5)


@pytest.fixture
def platform(tmp_path):
    run = Platform(tmp_path)
    yield run
    run.kill_leftovers()


def assert_everything_stops(platform: Platform, signalled_at: float) -> None:
    deadline = signalled_at + STOP_BOUND_SECONDS
    returncode = platform.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    while time.monotonic() < deadline and (processes_of_run(platform.run_id) or not all(map(port_free, platform.ports))):
        time.sleep(0.1)
    left = processes_of_run(platform.run_id)
    assert left == [], f"still running {STOP_BOUND_SECONDS} s after the signal: {left}\n{platform.log()}"
    assert [p for p in platform.ports if not port_free(p)] == []
    log = platform.log()
    assert returncode == 0, log  # nothing had to be killed
    assert "stopping ..." in log and "Traceback" not in log and "killing" not in log




def test_sigterm_to_the_group_stops_every_process_and_frees_every_port(tmp_path):
    # The settlement writer would wait a minute: only the web server's flush at shutdown writes the generation.
    platform = Platform(tmp_path, SETTLEMENT_FLUSH_SECONDS="60")
    try:
        platform.wait_until_serving()
        key = next(line.split()[-1] for line in platform.log().splitlines() if line.strip().startswith("API key:"))
        request = urllib.request.Request(
            f"http://127.0.0.1:{platform.port}/api/v1/chat/completions",
            data=json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            generation_id = json.load(response)["id"]
        assert generations_with(platform.db_path, generation_id) == 0  # still queued in the web server
        signalled_at = time.monotonic()
        platform.signal_group(signal.SIGTERM)
        assert_everything_stops(platform, signalled_at)
    finally:
        platform.kill_leftovers()
    assert generations_with(platform.db_path, generation_id) == 1


def generations_with(db_path: Path, generation_id: str) -> int:
    with closing(sqlite3.connect(db_path, timeout=20)) as db:
        return db.execute("SELECT count(*) FROM activity_generation WHERE id = ?", (generation_id,)).fetchone()[0]


def test_a_second_sigint_during_the_shutdown_does_not_interrupt_it(platform):
    platform.wait_until_serving()
    signalled_at = time.monotonic()
    platform.signal_group(signal.SIGINT)
    time.sleep(0.1)
    platform.signal_group(signal.SIGINT)
    assert_everything_stops(platform, signalled_at)
    assert "ignored 1 more stop signal" in platform.log()


def test_a_port_in_use_stops_it_before_anything_starts(tmp_path):
    """A second `make run` whose localstripe port is taken (e.g. by the first run's) must not register its
    webhook there: it refuses at once, naming the port, and starts nothing."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        run = Platform(tmp_path, stripe_port=squatter.getsockname()[1])
        try:
            assert run.process.wait(timeout=60) == 1
        finally:
            run.kill_leftovers()
    log = run.log()
    assert f"port {run.stripe_port} (STRIPE_PORT) on 127.0.0.1 is in use" in log and "Traceback" not in log
    assert "migrating" not in log and not (tmp_path / "var" / "db.sqlite3").exists()
