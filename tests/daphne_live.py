"""tests/daphne_echo_app.py served by a real Daphne process, and a reader of raw HTTP/1.1 answers."""

import pytest


def echo_server_start(http: str, options: tuple[str, ...] = ("-v", "0")):
    """tests/daphne_echo_app.py served by Daphne as make run starts it (openrouter_site.daphne_server);
    ``http``: httptools (the launcher's default) or twisted (Daphne's own HTTP layer, ``DAPHNE_HTTP``);
    ``options``: more of Daphne's arguments."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.live_server import free_port

    port = free_port()
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-m", "openrouter_site.daphne_server", *options, "-b", "127.0.0.1", "-p", str(port),
         "tests.daphne_echo_app:app"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "DAPHNE_HTTP": http},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
            time.sleep(0.1)
    return server, port


def http_response(sock, buffered: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, what came after) of one HTTP/1.1 response with Content-Length or chunked framing."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed before the head: {data!r}")
    head, _, rest = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(1 << 20) or pytest.fail("closed inside the body")
        return head, rest[:length], rest[length:]
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536) or pytest.fail("closed inside a chunk size")
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(65536) or pytest.fail("closed inside a chunk")
        body, rest = body + rest[:size], rest[size + 2:]
        if size == 0:
            return head, body, rest
