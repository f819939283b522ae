"""uvicorn as deployed (``python -m openrouter_site.uvicorn_server``): the writes of one event-loop
turn leave in one write.

The live tests count the server's write system calls in ``/proc/<pid>/io`` (``syscw``: libuv writes
to sockets with write/writev), over 40 keep-alive requests, against plain uvicorn as the control.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrouter_site.uvicorn_server import TurnTransport
from tests.daphne_live import http_response
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 40


class Recording:
    """A transport that records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close",))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort",))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7


def turn(scenario) -> Recording:
    recording = Recording()

    async def main() -> None:
        transport = TurnTransport(recording, asyncio.get_running_loop())
        scenario(transport, recording)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    return recording


def test_the_writes_of_one_turn_leave_together_in_order():
    def scenario(transport, recording):
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert recording.calls == []  # held until the turn ends

    assert turn(scenario).calls == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]


def test_close_writes_what_is_held_first_and_abort_drops_it():
    def closing(transport, recording):
        transport.write(b"last")
        transport.close()

    assert turn(closing).calls == [("write", b"last"), ("close",)]

    def aborting(transport, recording):
        transport.write(b"never")
        transport.abort()

    assert turn(aborting).calls == [("abort",)]


def test_nothing_is_written_once_the_client_left_and_the_rest_is_the_transports():
    def scenario(transport, recording):
        transport.write(b"late")
        recording.closing = True  # the connection went away during the turn
        assert transport.get_write_buffer_size() == 7  # anything else is asked of the real transport

    assert turn(scenario).calls == []


def server_start(module: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", module, "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port), "tests.daphne_echo_app:app"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
            time.sleep(0.1)


def writes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/<pid>/io")


def writes_per_answer(module: str) -> float:
    server, port = server_start(module)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            request = b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
            sock.sendall(request)
            head, body, _rest = http_response(sock)  # warm: the app imported, the first answer out
            assert head.startswith(b"HTTP/1.1 200") and body
            time.sleep(0.2)
            before = writes(server.pid)
            for _ in range(REQUESTS):
                sock.sendall(request)
                head, body, _rest = http_response(sock)
                assert head.startswith(b"HTTP/1.1 200") and b"content-length" in head.lower() and body
            return (writes(server.pid) - before) / REQUESTS
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/io"), reason="needs Linux's /proc/<pid>/io")
def test_an_answer_is_one_write_where_plain_uvicorn_makes_two():
    assert writes_per_answer("uvicorn") >= 1.9  # the control: head, then body
    assert writes_per_answer("openrouter_site.uvicorn_server") <= 1.1
