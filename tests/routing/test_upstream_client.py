"""The provider client (``routing.upstream``) against scripted HTTP/1.1 servers on real sockets.

Each server is a few lines of asyncio that read the request head and write bytes exactly as a
provider (or a broken one) would: keep-alive and its races, chunked and close-delimited bodies,
gzip and deflate, informational answers, stalls, resets and malformed answers.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import shutil
import ssl
import subprocess
import zlib
from collections.abc import Awaitable, Callable

import pytest

from routing import upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict], Awaitable[None]]


def answer(body: bytes, *, status: str = "200 OK", headers: tuple[str, ...] = ()) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """(head, body) of one request, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def replying(raw: bytes, *, then_sleep: float | None = None) -> Handler:
    """A provider that reads one request and writes ``raw``; then it waits for the next request on the
    connection, or ``then_sleep`` seconds."""

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        if then_sleep is None:
            await read_request(reader)
        else:
            await asyncio.sleep(then_sleep)

    return handler


def run(
    handler: Handler, scenario: Callable[[str, dict], Awaitable[None]], tls: ssl.SSLContext | None = None
) -> dict:
    """Serve ``handler`` on a free port and run ``scenario(url, state)`` against it on a fresh loop
    (over TLS with ``tls``, the server's context)."""
    state: dict = {"connections": 0, "requests": []}

    async def main() -> None:
        async def on_connection(reader, writer):
            state["connections"] += 1
            try:
                await handler(reader, writer, state)
            finally:
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            await scenario(f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/chat/completions", state)
        finally:
            await upstream.close()
            server.close()

    asyncio.run(main())
    return state


async def keep_alive_echo(reader, writer, state):
    while (request := await read_request(reader)) is not None:
        state["requests"].append(request)
        writer.write(answer(b'{"echo": ' + str(len(request[1])).encode() + b"}"))
        await writer.drain()


async def post(url: str, body: bytes = b"{}", headers: dict | None = None) -> tuple[int, bytes]:
    response = await upstream.send(url, headers or {"Content-Type": "application/json"}, body)
    try:
        return response.status, await response.read()
    finally:
        response.release()


def test_keep_alive_reuses_one_connection_and_sends_the_head_we_mean():
    async def scenario(url, state):
        for size in (0, 5, 70_000):
            assert await post(url, b"x" * size, {"User-Agent": "theirs", "Authorization": "Bearer k"}) == (
                200,
                b'{"echo": %d}' % size,
            )

    state = run(keep_alive_echo, scenario)
    assert state["connections"] == 1
    head = state["requests"][0][0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert head.count("User-Agent:") == 1 and f"User-Agent: {upstream.USER_AGENT}" in head
    assert "Authorization: Bearer k" in head and "Content-Length: 0" in head


def test_a_chunked_stream_arrives_piece_by_piece():
    release = asyncio.Event

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await state["next"].wait()
            state["next"].clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    async def scenario(url, state):
        state["next"] = release()
        response = await upstream.send(url, {}, b"{}")
        seen = []
        async for data in response:
            seen.append(data)
            state["next"].set()  # the server sends the next piece only after this one was read
        response.release()
        assert seen == [b"data: one\n\n", b"data: two\n\n"]
        assert response.connection in upstream.pool().idle[response.connection.origin]  # read to its end: reused

    run(handler, scenario)


@pytest.mark.parametrize(
    "encoding, encode",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", lambda b: b)],
)
def test_compressed_answers_are_decoded(encoding, encode):
    body = b'{"choices": []}' * 1000

    async def handler(reader, writer, state):
        head, _ = await read_request(reader)
        state["accept"] = [line for line in head.split(b"\r\n") if line.startswith(b"Accept-Encoding")]
        writer.write(answer(encode(body), headers=(f"Content-Encoding: {encoding}",)))
        await writer.drain()

    async def scenario(url, state):
        assert await post(url) == (200, body)

    assert run(handler, scenario)["accept"] == [b"Accept-Encoding: gzip, deflate"]


@pytest.mark.parametrize(
    "raw, error",
    [
        (answer(b"x", headers=("Content-Encoding: br",)), "encoded as 'br'"),
        (answer(b"not gzip", headers=("Content-Encoding: gzip",)), "does not decompress"),
        (b"HTTP/1.1 2xx Fine\r\n\r\n", "malformed HTTP"),
        (b"SPDY/9 200 OK\r\n\r\n", "malformed HTTP"),
    ],
)
def test_an_answer_it_cannot_read_is_a_bad_response(raw, error):
    async def scenario(url, state):
        with pytest.raises(upstream.BadResponse, match=error):
            await post(url)

    run(replying(raw, then_sleep=0.2), scenario)


def test_a_body_without_a_length_ends_with_the_connection_and_is_not_reused():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"a": 1}')
        await writer.drain()

    async def scenario(url, state):
        assert await post(url) == (200, b'{"a": 1}')
        assert await post(url) == (200, b'{"a": 1}')

    assert run(handler, scenario)["connections"] == 2


def test_an_informational_answer_is_skipped():
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"

    async def scenario(url, state):
        response = await upstream.send(url, {}, b"{}")
        assert (response.status, await response.read()) == (200, b"ok")
        assert response.headers.get("x-real") == "1" and "link" not in response.headers
        response.release()

    run(replying(early_hints + answer(b"ok", headers=("X-Real: 1",))), scenario)


def test_error_answers_keep_their_status_and_headers():
    async def scenario(url, state):
        response = await upstream.send(url, {}, b"{}")
        assert response.status == 429 and response.headers.get("Retry-After") == "7"
        assert response.headers["RETRY-AFTER"] == "7"
        assert await response.read() == b'{"error": "slow down"}'
        response.release()

    run(replying(answer(b'{"error": "slow down"}', status="429 Too Many Requests", headers=("Retry-After: 7",))), scenario)


def test_a_pooled_connection_closed_by_the_provider_is_retried_once_on_a_new_one():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(answer(b"first" if state["connections"] == 1 else b"fresh"))
        await writer.drain()
        if state["connections"] == 1:
            await read_request(reader)  # the second request arrives on the kept connection ...
            writer.transport.abort()  # ... and the provider drops it unanswered (its keep-alive ran out)
        else:
            await read_request(reader)

    async def scenario(url, state):
        assert await post(url) == (200, b"first")
        assert await post(url) == (200, b"fresh")

    assert run(handler, scenario)["connections"] == 2


def test_a_new_connection_dropped_unanswered_is_an_error_not_a_retry():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.transport.abort()

    async def scenario(url, state):
        with pytest.raises(upstream.ConnectionDropped):
            await post(url)

    assert run(handler, scenario)["connections"] == 1


def test_a_connection_dropped_mid_body_fails_the_read():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async def scenario(url, state):
        response = await upstream.send(url, {}, b"{}")
        with pytest.raises(upstream.ConnectionDropped):
            await response.read()
        response.release()
        assert not upstream.pool().idle.get(response.connection.origin)

    run(handler, scenario)


@pytest.mark.parametrize("stall_after_head", [False, True])
def test_a_provider_that_goes_quiet_times_out(settings, stall_after_head):
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.3

    async def handler(reader, writer, state):
        await read_request(reader)
        if stall_after_head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            await writer.drain()
        await asyncio.sleep(3)

    async def scenario(url, state):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            response = await upstream.send(url, {}, b"{}")
            await response.read()
        assert 0.25 < loop.time() - started < 2.0

    run(handler, scenario)


def test_a_slow_but_steady_stream_does_not_time_out(settings):
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.3  # between reads, not for the whole answer

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):
            await asyncio.sleep(0.1)
            writer.write(b"x")
            await writer.drain()
        await read_request(reader)

    async def scenario(url, state):
        assert await post(url) == (200, b"x" * 8)

    run(handler, scenario)


def test_close_wakes_a_waiting_reader_with_connection_dropped():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    async def scenario(url, state):
        response = await upstream.send(url, {}, b"{}")
        seen = []

        async def reader():
            async for data in response:
                seen.append(data)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.1)
        response.close()  # the client left: the gateway drops the provider's connection
        with pytest.raises(upstream.ConnectionDropped):
            await asyncio.wait_for(task, 1)
        assert seen == [b"hello"]

    run(handler, scenario)


def test_a_large_answer_waits_for_its_reader_and_arrives_whole():
    body = bytes(range(256)) * 65536  # 16 MiB: far more than the pause threshold and the socket buffers

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(answer(body))
        await writer.drain()
        state["drained"] = True
        await read_request(reader)

    async def scenario(url, state):
        response = await upstream.send(url, {}, b"{}")
        await asyncio.sleep(0.5)
        assert "drained" not in state  # reading paused: the provider waits rather than the gateway buffering it all
        received = hashlib.sha256()
        async for data in response:
            received.update(data)
            await asyncio.sleep(0)
        response.release()
        assert received.hexdigest() == hashlib.sha256(body).hexdigest()

    run(handler, scenario)


def test_a_slow_compressed_stream_does_not_time_out_on_bytes_that_decode_to_nothing(settings):
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.3
    compressed = gzip.compress(b"hello")

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(compressed)}\r\n\r\n".encode())
        for index in range(len(compressed)):  # the gzip header alone decodes to nothing: no read is woken
            writer.write(compressed[index : index + 1])
            await writer.drain()
            await asyncio.sleep(0.05)
        await read_request(reader)

    async def scenario(url, state):
        assert await post(url) == (200, b"hello")

    run(handler, scenario)


def test_an_answer_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(upstream, "MAX_BODY_BYTES", 1000)
    small_on_the_wire = answer(gzip.compress(b"x" * 5000), headers=("Content-Encoding: gzip",))

    async def scenario(url, state):
        with pytest.raises(upstream.BadResponse, match="too large"):
            await post(url)

    run(replying(small_on_the_wire, then_sleep=0.2), scenario)


def test_headers_that_would_split_the_request_are_refused_before_anything_is_sent():
    async def scenario(url, state):
        for headers in ({"X-A": "1\r\nX-Injected: 1"}, {"X-A\nB": "1"}, {"X-A": 5}):
            with pytest.raises(upstream.UpstreamError, match="cannot be sent"):
                await upstream.send(url, headers, b"{}")

    assert run(keep_alive_echo, scenario)["requests"] == []


def test_a_host_name_is_looked_up_once_for_a_burst_of_new_connections(monkeypatch):
    lookups = []
    resolve = upstream.Pool.resolve

    async def counted(self, host, port):
        lookups.append(host)
        return await resolve(self, host, port)

    monkeypatch.setattr(upstream.Pool, "resolve", counted)

    async def scenario(url, state):
        named = url.replace("127.0.0.1", "localhost")  # localhost may come back as ::1 first: the next is tried
        results = await asyncio.gather(*(post(named) for _ in range(8)))
        assert results == [(200, b'{"echo": 2}')] * 8
        assert await post(named) == (200, b'{"echo": 2}')

    state = run(keep_alive_echo, scenario)
    assert lookups == ["localhost"] and state["connections"] == 8


def test_nothing_listening_is_connect_failed_and_other_schemes_are_refused():
    async def scenario():
        with pytest.raises(upstream.ConnectFailed):
            await upstream.send("http://127.0.0.1:9/v1/chat/completions", {}, b"{}")
        with pytest.raises(upstream.ConnectFailed, match="not an http"):
            await upstream.send("ftp://example.com/x", {}, b"{}")
        with pytest.raises(upstream.ConnectFailed, match="no-such-host.invalid"):
            await upstream.send("http://no-such-host.invalid/v1", {}, b"{}")
        await upstream.close()

    asyncio.run(scenario())


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost (openssl's command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, cert


def test_https_with_a_trusted_certificate_keeps_its_connection(certificate, monkeypatch):
    server, cert = certificate
    trusting = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(upstream, "tls_context", lambda: trusting)

    async def scenario(url, state):
        assert url.startswith("https://")
        for size in (3, 4):
            assert await post(url, b"x" * size) == (200, b'{"echo": %d}' % size)

    assert run(keep_alive_echo, scenario, tls=server)["connections"] == 1


def test_https_with_a_certificate_nobody_vouches_for_is_connect_failed(certificate):
    server, _cert = certificate  # the system's trust store, as deployed: a self-signed certificate is refused

    async def scenario(url, state):
        with pytest.raises(upstream.ConnectFailed):
            await post(url)

    assert run(keep_alive_echo, scenario, tls=server)["requests"] == []
