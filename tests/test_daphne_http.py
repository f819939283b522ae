"""Daphne's HTTP/1.1 on httptools (openrouter_site/daphne_http.py), through real sockets.

Each behaviour is checked on the launcher's default (httptools) and, where Daphne's own Twisted layer
behaves the same, on it too (``DAPHNE_HTTP=twisted``): the application sees the same scope and messages.
"""

import asyncio
import hashlib
import json
import socket
import time

import aiohttp
import pytest

from tests.daphne_live import echo_server_start, http_response


@pytest.fixture(scope="module")
def servers():
    started = {http: echo_server_start(http) for http in ("httptools", "twisted")}
    yield {http: port for http, (_, port) in started.items()}
    for server, _ in started.values():
        server.terminate()
        server.wait(10)


@pytest.fixture(params=["httptools", "twisted"])
def port(request, servers):
    return servers[request.param]


@pytest.fixture
def fast_port(servers):
    return servers["httptools"]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    with connect(port) as sock:
        sock.sendall(request)
        head, body, _ = http_response(sock)
        return head, body


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        data += sock.recv(1000) or pytest.fail(f"closed before {marker!r}: {data!r}")
    return data


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_the_application_sees_daphnes_scope(servers):
    request = (
        b"GET /scope/a%20b/%2Fc?x=1&y=%C3%A9 HTTP/1.1\r\nHost: example.test\r\nX-Test: v1\r\nX-Test: v2\r\n"
        b"Bad_Name: dropped\r\nDaphne-Root-Path: /mounted%20here\r\nContent-Type: application/json\r\n\r\n"
    )
    views = {}
    for http, port in servers.items():
        head, body = exchange(port, request)
        assert head.startswith(b"HTTP/1.1 200")
        views[http] = json.loads(body)
    fast, twisted = views["httptools"], views["twisted"]
    assert fast["client"][0] == "127.0.0.1" and fast["server"] == ["127.0.0.1", servers["httptools"]]
    fast.pop("client"), twisted.pop("client"), fast.pop("server"), twisted.pop("server")
    assert fast == twisted
    assert fast["path"] == "/scope/a b//c" and fast["raw_path"] == "/scope/a%20b/%2Fc"
    assert fast["query_string"] == "x=1&y=%C3%A9" and fast["root_path"] == "/mounted here"
    assert fast["headers"] == [
        ["host", "example.test"], ["x-test", "v1"], ["x-test", "v2"], ["content-type", "application/json"]
    ]
    assert (fast["http_version"], fast["method"], fast["scheme"]) == ("1.1", "GET", "http")


@pytest.mark.parametrize("size", [0, 1, 70_000, 3_000_000])
def test_request_bodies_arrive_whole(port, size):
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    with connect(port) as sock:
        sock.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size + payload)
        head, body, _ = http_response(sock)
    seen = json.loads(body)
    assert (seen["size"], seen["sha256"]) == (size, hashlib.sha256(payload).hexdigest())


def test_a_large_body_reaches_the_application_in_pieces(fast_port):
    payload = b"p" * 1_000_000
    _, body = exchange(fast_port, b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + payload)
    assert json.loads(body)["messages"] >= 1_000_000 // 65_536  # read as it came, not held until the end


def test_chunked_request_bodies_are_decoded(port):
    chunks = [b"hello ", b"chunked ", b"world" * 1000]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    _, body = exchange(port, b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded)
    assert json.loads(body)["sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_expect_100_continue_is_answered_before_the_body(port):
    with connect(port) as sock:
        sock.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = recv_until(sock, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"12345")
        _, body, _ = http_response(sock, interim.partition(b"\r\n\r\n")[2])
    assert json.loads(body)["size"] == 5


def test_pipelined_requests_are_answered_in_order(port):
    with connect(port) as sock:
        sock.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n" % index for index in range(5)))
        left = b""
        for index in range(5):
            _, body, left = http_response(sock, left)
            assert body == b'{"path": "/p%d"}' % index


def test_http_1_0_gets_a_1_0_answer_and_the_connection_closes(port):
    with connect(port) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        head, body, left = http_response(sock)
        assert head.startswith(b"HTTP/1.0 200") and body == b'{"path": "/old"}'
        assert closed(sock)


def test_http_1_0_keep_alive_is_kept(fast_port):
    with connect(fast_port) as sock:
        for index in range(2):
            sock.sendall(b"GET /k%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % index)
            head, body, _ = http_response(sock)
            assert b"connection: keep-alive" in head.lower() and body == b'{"path": "/k%d"}' % index


def test_head_answers_carry_no_body(port):
    with connect(port) as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b'{"path": "/after"}'):
            data += sock.recv(65536) or pytest.fail(f"closed: {data!r}")
    first, _, second = data.partition(b"\r\n\r\n")
    assert b"content-length: 14" in first.lower()  # {"path": "/h"}
    assert second.startswith(b"HTTP/1.1 200")  # nothing between the HEAD's head and the next answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n12345",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["garbage", "space-in-header-name", "nul-in-header-value", "non-ascii-path", "two-lengths", "length-and-chunked"],
)
def test_malformed_requests_get_a_400_and_the_connection_closes(fast_port, request_bytes):
    with connect(fast_port) as sock:
        sock.sendall(request_bytes)
        head, body, _ = http_response(sock)
        assert head.startswith(b"HTTP/1.1 400") and b"Bad Request" in body
        assert closed(sock)


def test_oversized_heads_are_refused(fast_port):
    with connect(fast_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Filler: %s\r\n" % (b"f" * 20_000) + b"\r\n")
        head, _, _ = http_response(sock)
        assert head.startswith(b"HTTP/1.1 431") and closed(sock)
    with connect(fast_port) as sock:
        sock.sendall(b"GET /" + b"u" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        head, _, _ = http_response(sock)
        assert head.startswith(b"HTTP/1.1 414") and closed(sock)


def test_an_application_error_is_daphnes_500_page(port):
    head, body = exchange(port, b"GET /raise HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"Exception inside application." in body


def test_an_answer_given_before_the_body_was_read_closes_the_connection(fast_port):
    with connect(fast_port) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        head, body, _ = http_response(sock)
        assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
        assert closed(sock)


def test_the_application_hears_the_client_go(port):
    with connect(port) as sock:
        sock.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        recv_until(sock, b"data: first")
    deadline = time.monotonic() + 5
    while True:
        _, body = exchange(port, b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        if "hold: http.disconnect" in json.loads(body):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_websocket_upgrades_go_to_daphnes_websocket_protocol(port):
    async def talk() -> tuple[str, int]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws?room=1") as ws:
                await ws.send_str("hi")
                reply = await ws.receive(timeout=10)
                closing = await ws.receive(timeout=10)
                return reply.data, closing.type

    text, closing = asyncio.run(talk())
    assert text == "echo: hi" and closing == aiohttp.WSMsgType.CLOSE


def test_other_upgrades_are_answered_over_http_1_1_then_closed(fast_port):
    with connect(fast_port) as sock:
        sock.sendall(b"GET /h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        head, body, _ = http_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == b'{"path": "/h2c"}'
        assert closed(sock)


def test_a_header_value_that_would_split_the_response_is_a_500(fast_port):
    head, body = exchange(fast_port, b"GET /split HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"x-injected" not in head.lower()


def test_trailer_fields_of_a_pipelined_chunked_body_are_not_headers(port):
    with connect(port) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /scope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Trailer: t\r\nDaphne-Root-Path: /evil\r\n\r\n"
        )
        _, first, left = http_response(sock)
        _, scope, _ = http_response(sock, left)
    assert first == b'{"path": "/first"}'
    view = json.loads(scope)
    assert view["headers"] == [["host", "t"], ["transfer-encoding", "chunked"]] and view["root_path"] == ""


def test_a_handshake_pipelined_behind_a_request_closes_the_connection(fast_port):
    def holds() -> int:
        _, body = exchange(fast_port, b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        return json.loads(body).count("hold: http.disconnect")

    before = holds()
    with connect(fast_port) as sock:
        sock.sendall(
            b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        deadline = time.monotonic() + 5
        while sock.recv(65536):
            assert time.monotonic() < deadline
    deadline = time.monotonic() + 5
    while holds() == before:  # the application waiting on the first request heard the client go
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_daphnes_access_log_still_gets_a_line_per_answer(tmp_path):
    log = tmp_path / "access.log"
    server, port = echo_server_start("httptools", ("--access-log", str(log)))
    try:
        exchange(port, b"GET /logged?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 5
        while '"GET /logged?x=1" 200' not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)
