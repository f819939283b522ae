"""The platform's ASGI application served for real, on a free port, in a thread of the test process.

Running in-process means the server shares the test database (and its per-test
cleanup) while every request still goes through a real socket, a real ASGI
server, the real gateway and real HTTP to the provider simulator.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from openrouter_site.uvicorn_server import TurnHttpToolsProtocol


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning", access_log=False, loop="asyncio",
            http=TurnHttpToolsProtocol,  # as deployed: one write per answer (openrouter_site/uvicorn_server.py)
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-asgi-server", daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"
