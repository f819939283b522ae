"""The pooled HTTP/1.1 client that talks to providers.

Every attempt the gateway makes is one POST to a provider, and the client's own work is paid on every
request: aiohttp spent about 105 µs of CPU per request against the zero-delay simulator on this
machine, this client about 40 (see README, "Why httptools, orjson and uvicorn on the hot path"). It is
small because the job is: one method, a body already in bytes, keep-alive connections per origin,
answers parsed by httptools (llhttp, in C: what uvicorn and Daphne's layer here use), gzip and
deflate decoded, and nothing else (no cookies: a provider's Set-Cookie never rides along on another
account's request; no redirects: a provider's 3xx is its answer; no proxies from the environment).

``await send(url, headers, body)`` returns an ``UpstreamResponse`` once the status line and headers
are in: ``status``, ``headers`` (case-insensitive ``get``), then ``await read()`` for the whole body
or ``async for data in response`` as it arrives, and ``release()`` (the connection goes back to the
pool when the answer was read to its end) or ``close()`` (drop it: a stream's provider stops).

Timeouts: connecting (``GATEWAY_CONNECT_TIMEOUT``), and the wait for any byte of the answer
(``GATEWAY_FIRST_BYTE_TIMEOUT``, again between any two reads, as aiohttp's ``sock_read``); both
raise ``TimeoutError``. Every other failure is an ``UpstreamError``. A pooled connection the
provider closed before answering (its keep-alive ran out as the request left) is retried once on a
new connection: nothing of that request was answered.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import weakref
import zlib
from collections import deque
from urllib.parse import urlsplit

import httptools
from django.conf import settings

USER_AGENT = "openrouter-gateway/0.1"
IDLE_SECONDS = 30.0  # a pooled connection idle longer than this is closed instead of reused
IDLE_PER_ORIGIN = 256  # connections kept for reuse per provider origin; more are closed when released
PAUSE_BYTES = 256 * 1024  # buffered and not yet taken: reading pauses until the reader catches up
DNS_SECONDS = 300.0  # how long a provider host's looked-up addresses are reused
MAX_BODY_BYTES = 64 * 1024 * 1024  # a provider's answer (decoded) larger than this is refused
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")
SET_BY_THE_CLIENT = frozenset({"host", "user-agent", "accept-encoding", "content-length", "transfer-encoding", "connection"})


class UpstreamError(Exception):
    """The provider could not be reached, or its answer could not be read."""


class ConnectFailed(UpstreamError):
    """No connection: refused, unreachable, a name that does not resolve, a TLS handshake that failed."""


class ConnectionDropped(UpstreamError):
    """The connection ended before the answer did (or ``close()`` was called while reading)."""


class BadResponse(UpstreamError):
    """The provider's answer is not HTTP/1.1 this client reads (malformed, too large, unknown encoding)."""


class Headers(dict):
    """Response headers, stored lower-cased; ``get`` and ``[]`` take any case. Repeated headers are
    joined with ", " (RFC 9110 5.3)."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


@functools.lru_cache(maxsize=1024)
def target(url: str) -> tuple[tuple[str, str, int], str, bytes]:
    """``((scheme, host, port), Host header, request target)`` of an http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"not an http(s) URL: {url[:100]!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ConnectFailed(f"bad port in {url[:100]!r}") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c in path for c in " \r\n\0"):
        raise ConnectFailed("the URL's path holds a space or a control character")
    return (scheme, host, port), host_header, path.encode("ascii", "strict")


@functools.lru_cache(maxsize=1024)
def numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def request_head(host_header: str, path: bytes, headers: dict[str, str], length: int) -> bytes:
    lines = [f"Host: {host_header}\r\nUser-Agent: {USER_AGENT}\r\nAccept-Encoding: gzip, deflate\r\n"]
    for name, value in headers.items():
        if name.lower() in SET_BY_THE_CLIENT:
            continue
        if not isinstance(value, str) or any(c in name or c in value for c in FORBIDDEN_IN_HEADERS):
            raise UpstreamError(f"header {name[:40]!r} cannot be sent (not text, or a line break in it)")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return b"POST " + path + b" HTTP/1.1\r\n" + "".join(lines).encode("utf-8")


# --- Connections -----------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive connection to a provider; carries one exchange at a time."""

    __slots__ = (
        "pool", "origin", "transport", "parser", "response", "closed", "last_data", "idle_since",
        "keep_alive", "answered",
    )

    def __init__(self, pool: Pool, origin: tuple[str, str, int]) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.last_data = 0.0
        self.idle_since = 0.0
        self.keep_alive = False
        self.answered = False  # any byte of the current exchange's answer arrived

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_data = self.pool.loop.time()
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(BadResponse("the provider switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # a callback's own refusal (too large, an encoding not asked for)
            self.fail(cause if isinstance(cause, UpstreamError) else BadResponse(f"malformed HTTP from the provider: {exc}"))

    def eof_received(self) -> bool:
        return False  # close: a provider that half-closes is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None and not response.done:
            if response.until_close and response.status:
                response.finish()  # an answer without a length ends with its connection
            else:
                response.fail(ConnectionDropped("the provider closed the connection"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is None:
            raise BadResponse("an answer arrived that no request asked for")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = response.headers
        previous = dict.get(headers, key)
        dict.__setitem__(headers, key, text if previous is None else f"{previous}, {text}")

    def on_headers_complete(self) -> None:
        response = self.response
        status = self.parser.get_status_code()
        if status < 200:  # 1xx (103 Early Hints, say): the answer follows
            response.headers = Headers()
            response.informational = True
            return
        response.headers_complete(status)

    def on_body(self, body: bytes) -> None:
        if self.response is not None and not self.response.informational:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None:
            return
        if response.informational:
            response.informational = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        response.finish()

    # the client's side

    def exchange(self, request: bytes, timeout: float) -> UpstreamResponse:
        """Send one request; its answer arrives in the response returned."""
        self.response = response = UpstreamResponse(self, timeout)
        self.answered = self.keep_alive = False
        self.last_data = self.pool.loop.time()
        self.transport.write(request)
        return response

    def fail(self, exc: BaseException) -> None:
        if self.response is not None and not self.response.done:
            self.response.fail(exc)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self, timeout: float) -> None:
        """The read timer went off: fail the waiting read if nothing arrived for ``timeout`` seconds."""
        response = self.response
        if response is None or response.waiter is None or response.waiter.done():
            return
        remaining = self.last_data + timeout - self.pool.loop.time()
        if remaining > 0:
            response.timer = self.pool.loop.call_later(remaining, self.timed_out, timeout)
            return
        self.fail(TimeoutError("the provider sent nothing in time"))


class UpstreamResponse:
    """A provider's answer on one connection (see the module's docstring)."""

    __slots__ = (
        "connection", "status", "headers", "buffer", "buffered", "total", "done", "error", "waiter",
        "timer", "timeout", "decoder", "until_close", "informational", "paused", "released",
    )

    def __init__(self, connection: Connection, timeout: float) -> None:
        self.connection = connection
        self.status = 0
        self.headers = Headers()
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.total = 0
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timeout = timeout
        self.decoder = None
        self.until_close = False
        self.informational = False
        self.paused = False
        self.released = False

    # fed by the connection

    def headers_complete(self, status: int) -> None:
        self.status = status
        headers = self.headers
        encoding = dict.get(headers, "content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise BadResponse(f"the provider's answer is encoded as {encoding[:40]!r}, which was not asked for")
        self.until_close = (
            "content-length" not in headers
            and "chunked" not in dict.get(headers, "transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        self.wake()

    def feed(self, data: bytes) -> None:
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data)
            except zlib.error:
                raise BadResponse("the provider's compressed answer does not decompress") from None
        if not data:
            return
        self.total += len(data)
        if self.total > MAX_BODY_BYTES:
            raise BadResponse("the provider's answer is too large")
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > PAUSE_BYTES and not self.paused and not self.connection.closed:
            self.paused = True
            self.connection.transport.pause_reading()
        self.wake()

    def finish(self) -> None:
        if self.decoder is not None:
            try:
                tail = self.decoder.flush()
            except zlib.error:
                self.fail(BadResponse("the provider's compressed answer does not decompress"))
                return
            if tail:
                self.buffer.append(tail)
                self.buffered += len(tail)
        self.done = True
        self.wake()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.done = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Until something arrives (headers, a piece of body, the end, an error), or the read timeout."""
        connection = self.connection
        loop = connection.pool.loop
        self.waiter = waiter = loop.create_future()
        if self.paused:
            self.paused = False
            connection.transport.resume_reading()
        self.timer = loop.call_at(connection.last_data + self.timeout, connection.timed_out, self.timeout)
        try:
            await waiter
        finally:
            self.timer.cancel()
            self.waiter = None

    # the reader's side

    async def read(self) -> bytes:
        """The whole body (decoded)."""
        while not self.done:
            await self.wait()
        if self.error is not None:
            raise self.error
        data = b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        return data

    def __aiter__(self) -> UpstreamResponse:
        """``async for data in response``: the body (decoded) in the pieces it arrives in."""
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self.buffer:
                data = b"".join(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
                self.buffer.clear()
                self.buffered = 0
                return data
            if self.error is not None:
                raise self.error
            if self.done:
                raise StopAsyncIteration
            await self.wait()

    def release(self) -> None:
        """Done with the answer: its connection is reused if the answer was read to its end."""
        if self.released:
            return
        self.released = True
        connection = self.connection
        connection.response = None
        if self.done and self.error is None and connection.keep_alive and not connection.closed:
            connection.pool.put(connection)
        else:
            connection.abort()

    def close(self) -> None:
        """Drop the connection now; a reader waiting on it gets ``ConnectionDropped``. (After
        ``release`` the connection may serve another answer: nothing to do.)"""
        if self.released:
            return
        if not self.done:
            self.fail(ConnectionDropped("closed while reading"))
        self.released = True
        self.connection.response = None
        self.connection.abort()


# --- The pool --------------------------------------------------------------------------------------


class Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[str, str, int], list[Connection]] = {}
        self.resolved: dict[tuple[str, int], tuple[float, list[tuple[int, tuple]]]] = {}
        self.resolving: dict[tuple[str, int], asyncio.Task] = {}

    def take(self, origin: tuple[str, str, int]) -> Connection | None:
        idle = self.idle.get(origin)
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.abort()
        return None

    def put(self, connection: Connection) -> None:
        idle = self.idle.setdefault(connection.origin, [])
        if len(idle) >= IDLE_PER_ORIGIN:
            connection.abort()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)

    def forget(self, connection: Connection) -> None:
        idle = self.idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    async def connect(self, origin: tuple[str, str, int], timeout: float) -> Connection:
        scheme, host, port = origin
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.addresses(host, port)
                for index, (family, address) in enumerate(addresses):
                    try:
                        _transport, connection = await self.loop.create_connection(
                            lambda: Connection(self, origin),
                            address[0],
                            address[1],
                            family=family,
                            ssl=tls_context() if scheme == "https" else None,
                            server_hostname=host if scheme == "https" else None,
                        )
                        return connection
                    except OSError:
                        if index == len(addresses) - 1:
                            raise
        except TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"connecting to {host}:{port} failed: {type(exc).__name__}") from None
        raise ConnectFailed(f"{host} has no address")

    async def addresses(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """``host``'s addresses, looked up once per ``DNS_SECONDS`` (a burst of new connections to one
        provider asks the resolver once, as aiohttp's DNS cache did); an IP address is its own."""
        if numeric(host):
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
        key = (host, port)
        cached = self.resolved.get(key)
        if cached is not None and cached[0] > self.loop.time():
            return cached[1]
        pending = self.resolving.get(key)
        if pending is None:
            pending = self.resolving[key] = self.loop.create_task(self.resolve(host, port))
            pending.add_done_callback(functools.partial(self.resolved_done, key))
        return await asyncio.shield(pending)

    def resolved_done(self, key: tuple[str, int], task: asyncio.Task) -> None:
        del self.resolving[key]
        if not task.cancelled():
            task.exception()  # retrieved here: its callers may all have given up waiting

    async def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((family, address[:2]) for family, _type, _proto, _name, address in infos))
        if len(self.resolved) > 1024:
            self.resolved.clear()
        self.resolved[(host, port)] = (self.loop.time() + DNS_SECONDS, addresses)
        return addresses

    def close(self) -> None:
        for idle in self.idle.values():
            for connection in idle:
                connection.abort()
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


_last: list[Pool | None] = [None]  # the pool of the loop asked last: one loop per server process, no lookup


def pool() -> Pool:
    loop = asyncio.get_running_loop()
    current = _last[0]
    if current is not None and current.loop is loop:
        return current
    current = _pools.get(loop)
    if current is None:
        current = _pools[loop] = Pool(loop)
    _last[0] = current
    return current


async def send(url: str, headers: dict[str, str], body: bytes, *, read_timeout: float | None = None) -> UpstreamResponse:
    """POST ``body`` to a provider; the answer once its status and headers are in."""
    origin, host_header, path = target(url)
    data = request_head(host_header, path, headers, len(body)) + body
    timeout = settings.GATEWAY_FIRST_BYTE_TIMEOUT if read_timeout is None else read_timeout
    current = pool()
    for _ in range(2):
        connection = current.take(origin)
        reused = connection is not None
        if connection is None:
            connection = await current.connect(origin, settings.GATEWAY_CONNECT_TIMEOUT)
        response = connection.exchange(data, timeout)
        try:
            while not response.status and response.error is None:
                await response.wait()
        except BaseException:  # a timeout, or the caller cancelled: the connection is mid-exchange
            response.close()
            raise
        if response.error is None:
            return response
        response.close()
        if not (reused and isinstance(response.error, ConnectionDropped) and not connection.answered):
            raise response.error
    raise response.error


async def close() -> None:
    """Close this event loop's pooled connections (the server's shutdown; a test's own loop)."""
    current = _pools.pop(asyncio.get_running_loop(), None)
    _last[0] = None
    if current is not None:
        current.close()
