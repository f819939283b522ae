"""Daphne's HTTP/1.1 connections parsed by httptools (llhttp, in C) instead of ``twisted.web.http``.

Daphne's server stays what it is: its command line, endpoints (``-e``, ``--fd``, TLS), WebSocket
protocol (autobahn), application lifecycle (``Server.connections``, the application checker and
the timeout checker) and shutdown. What changes is the code between the socket and the ASGI
application for plain HTTP: Twisted's ``HTTPChannel`` and ``Request`` parse every request line and
header in Python, wrap each request in Deferreds, and ask the event loop twice per response to
watch the socket for writability. That cost about 125 µs of CPU per request in Daphne against 20
µs in uvicorn (a hello-world app, wrk, c=16); with the gateway behind it, Daphne served 0.5-0.9×
uvicorn's requests per second. Here the request is parsed by httptools (what uvicorn uses) and
answered with one ``send`` when the socket can take it.

What an application sees is Daphne's scope, message for message: the same ``path`` (unquoted),
``raw_path``, ``root_path`` (``daphne-root-path`` header), ``client``/``server``, proxy headers
(``--proxy-headers``), header names lowercased, names with ``_`` dropped (CVE-2015-0219), the same
400s for invalid header names and values and non-ASCII paths, ``http.disconnect`` when the client
goes or after the response, Daphne's error pages, ``--http-timeout``. Differences, all toward the
protocol: the request body arrives as it is read (in pieces of up to 64 KiB, reading paused while
the application has not taken them) rather than after the whole body is on disk; pipelined
requests are answered in order; ``TCP_NODELAY`` is set (streamed chunks are not held back);
header names are sent as the application wrote them. WebSocket upgrades are handed to Daphne's own
WebSocket protocol exactly as Daphne does.

Installed by ``openrouter_site.daphne_server`` (what ``make run`` and the benchmarks start) unless
``DAPHNE_HTTP=twisted``; plain ``daphne`` is untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from urllib.parse import unquote

import httptools
from daphne.http_protocol import WebRequest
from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES, parse_x_forwarded_for
from twisted.internet import protocol as twisted_protocol
from twisted.internet import tcp
from twisted.internet.interfaces import ISSLTransport
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import RESPONSES

logger = logging.getLogger(__name__)

MAX_URL_BYTES = 16_384  # Twisted's limit for a request line
MAX_HEADER_BYTES = 16_384  # Twisted's totalHeadersSize
MAX_HEADERS = 500  # Twisted's maxHeaders
BODY_PIECE = 65_536  # a request body reaches the application in pieces of at most this
IDLE_TIMEOUT = 60 * 60 * 12  # Twisted's HTTP idle timeout, kept
NO_BODY_STATUSES = frozenset({204, 304})
UNSAFE_VALUE_BYTES = frozenset(b"\r\n\x00")  # in a response header value: response splitting
DISCARD_LIMIT = 16 * 1024 * 1024  # unread request body drained after an early answer, at most
DISCARD_SECONDS = 10
ERROR_TEMPLATE = WebRequest.error_template


def status_line(version: bytes, status: int) -> bytes:
    reason = RESPONSES.get(status, b"Unknown Status")
    return b"HTTP/%s %d %s\r\n" % (version, status, reason)


def error_page(status: int, status_text: bytes, detail: str) -> bytes:
    """Daphne's error page (``WebRequest.basic_error``)."""
    return (ERROR_TEMPLATE % {"title": f"{status} {status_text.decode('ascii')}", "body": detail}).encode("utf8")


class Exchange:
    """One request and its response: what Daphne's ``Server.connections`` calls a protocol."""

    __slots__ = (
        "channel", "server", "method", "version", "raw_path", "query_string", "headers", "keep_alive",
        "expect_continue", "started_at", "queue", "body", "body_done", "response_started",
        "response_done", "chunked", "no_body", "status", "response_headers", "sent", "__weakref__",
    )

    def __init__(
        self, channel: HttpChannel, method: bytes, version: bytes, url: bytes, headers: list, *, keep_alive: bool,
        expect_continue: bool,
    ):
        self.channel = channel
        self.server = channel.server
        self.method = method
        self.version = version
        self.raw_path, _, self.query_string = url.partition(b"?")  # as Twisted splits it
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.started_at = time.time()
        self.queue: asyncio.Queue | None = None  # set once the application runs
        self.body: list[bytes] = []
        self.body_done = False
        self.response_started = False
        self.response_done = False
        self.chunked = False
        self.no_body = False
        self.status = 200
        self.response_headers: list = []
        self.sent = 0

    # --- the request side -----------------------------------------------------------------

    def start(self) -> None:
        """Validate like Daphne's ``WebRequest.process``, then run the application; an unexpected
        failure is Daphne's 500 page, as in ``process``."""
        try:
            self.application_start()
        except Exception:
            logger.exception("Daphne HTTP processing error")
            self.basic_error(500, b"Internal Server Error", "Daphne HTTP processing error")

    def application_start(self) -> None:
        server = self.server
        for name, value in self.headers:
            if not HEADER_NAME_RE.fullmatch(name):
                self.basic_error(400, b"Bad Request", "Invalid header name")
                return
            if INVALID_HEADER_VALUE_BYTES.intersection(value):
                self.basic_error(400, b"Bad Request", "Invalid header value")
                return
        try:
            path = self.raw_path.decode("ascii")
        except UnicodeDecodeError:
            self.raw_path = b"/"
            self.basic_error(400, b"Bad Request", "Invalid characters in path")
            return
        try:
            self.query_string.decode("ascii")
        except UnicodeDecodeError:
            self.basic_error(400, b"Bad Request", "Invalid query string")
            return
        channel = self.channel
        client, scheme = channel.client_addr, channel.scheme
        if server.proxy_forwarded_address_header:
            grouped: dict[bytes, list[bytes]] = {}
            for name, value in self.headers:
                grouped.setdefault(name.lower(), []).append(value)
            client, scheme = parse_x_forwarded_for(
                grouped,
                server.proxy_forwarded_address_header,
                server.proxy_forwarded_port_header,
                server.proxy_forwarded_proto_header,
                client,
                scheme,
            )
        root_path = server.root_path
        clean_headers = []
        for name, value in self.headers:
            if b"_" in name:
                continue
            name = name.lower()
            if name == b"daphne-root-path":
                root_path = unquote(value.decode("ascii"))
            else:
                clean_headers.append((name, value))
        if self.expect_continue and self.version == b"1.1":
            channel.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": self.version.decode("ascii"),
            "method": self.method.decode("ascii"),
            "path": unquote(path),
            "raw_path": self.raw_path,
            "root_path": root_path,
            "scheme": scheme,
            "query_string": self.query_string,
            "headers": clean_headers,
            "client": client,
            "server": channel.server_addr,
        }
        server.protocol_connected(self)
        application = server.application(scope=scope, receive=self.receive, send=self.send)
        server.connections[self]["application_instance"] = asyncio.ensure_future(application)
        self.queue = asyncio.Queue()  # the application runs on a later turn of the loop
        self.body_pass()

    def body_received(self, chunk: bytes) -> None:
        self.body.append(chunk)
        if self.queue is not None and sum(map(len, self.body)) >= BODY_PIECE:
            self.body_pass()

    def body_complete(self) -> None:
        self.body_done = True
        self.body_pass()

    def body_pass(self) -> None:
        """Hand what has been read of the body to the application (one message per piece)."""
        if self.queue is None or (not self.body and not self.body_done):
            return
        data = b"".join(self.body)
        self.body.clear()
        while len(data) > BODY_PIECE:
            self.queue.put_nowait({"type": "http.request", "body": data[:BODY_PIECE], "more_body": True})
            data = data[BODY_PIECE:]
        self.queue.put_nowait({"type": "http.request", "body": data, "more_body": not self.body_done})
        if not self.body_done:
            self.channel.reading_pause()

    async def receive(self) -> dict:
        queue = self.queue
        if queue.empty() and not self.body_done and not self.response_done:
            self.channel.reading_resume()
        return await queue.get()

    def disconnect_send(self) -> None:
        if self.queue is not None:
            self.queue.put_nowait({"type": "http.disconnect"})

    # --- the response side ----------------------------------------------------------------

    async def send(self, message: dict) -> None:
        """The application's ``send``: Daphne's ``Server.handle_reply`` checks, then the reply."""
        if self.response_done or self.channel.gone:
            return
        if message["type"] == "http.response.start":
            for name, value in message.get("headers", ()):
                if not isinstance(name, bytes) or not isinstance(value, bytes):
                    problem = f"Header {name!r}: {value!r} expected to be `bytes`"
                elif not HEADER_NAME_RE.fullmatch(name) or UNSAFE_VALUE_BYTES.intersection(value):
                    problem = f"Header {name!r}: {value!r} would not be one header line"
                else:
                    continue
                self.basic_error(500, b"Server Error", "Server Error")
                raise ValueError(problem)
        self.handle_reply(message)

    def handle_reply(self, message: dict) -> None:
        if self.response_done or self.channel.gone:
            return
        kind = message.get("type")
        if kind is None:
            raise ValueError("Message has no type defined")
        if kind == "http.response.start":
            if self.response_started:
                raise ValueError("HTTP response has already been started")
            if "status" not in message:
                raise ValueError("Specifying a status code is required for a Response message.")
            self.response_started = True
            self.status = int(message["status"])
            self.response_headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            if not self.response_started:
                raise ValueError(f"HTTP response has not yet been started but got {kind}")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            out = self.head_bytes() if self.response_headers is not None else b""
            if body and not self.no_body:
                out += b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body
                self.sent += len(body)
            if not more:
                if self.chunked:
                    out += b"0\r\n\r\n"
                self.response_done = True
            if out:
                self.channel.write(out)
            if not more:
                self.finished()
        else:
            raise ValueError(f"Cannot handle message type {kind}!")

    def head_bytes(self) -> bytes:
        """The status line and headers, once; decides chunking and whether the connection stays."""
        status, headers = self.status, self.response_headers
        self.response_headers = None
        lines = [status_line(self.version, status)]
        has_length = has_server = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"server":
                has_server = True
            elif lowered == b"connection" and value.lower() == b"close":
                self.keep_alive = False
            lines.append(b"%s: %s\r\n" % (name, value))
        if self.server.server_name and not has_server:
            lines.append(b"Server: %s\r\n" % self.server.server_name.encode())
        self.no_body = self.method == b"HEAD" or status < 200 or status in NO_BODY_STATUSES
        if not has_length and not self.no_body:
            if self.version == b"1.1":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0 without a length: the body ends when the connection does
        if not self.body_done:
            self.keep_alive = False  # answered before the request's body was read: the connection ends with it
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif self.version == b"1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def finished(self) -> None:
        """The response is complete: tell the application (as Daphne does), then the next request."""
        self.disconnect_send()
        server = self.server
        if self in server.connections:
            server.protocol_disconnected(self)
        if server.action_logger:  # Daphne's access log (-v 1 or --access-log)
            client = self.channel.client_addr
            server.log_action("http", "complete", {
                "path": (self.raw_path + (b"?" + self.query_string if self.query_string else b"")).decode("latin-1"),
                "status": self.status,
                "method": self.method.decode("ascii", "replace"),
                "client": f"{client[0]}:{client[1]}" if client else None,
                "time_taken": time.time() - self.started_at,
                "size": self.sent,
            })
        self.channel.exchange_finished(self)

    # --- what Daphne's server calls -------------------------------------------------------

    def handle_exception(self, exception: BaseException) -> None:
        if not self.response_started:
            self.basic_error(500, b"Internal Server Error", "Exception inside application.")
        else:
            self.channel.abort()

    def check_timeouts(self) -> None:
        timeout = self.server.http_timeout
        if timeout and not self.response_done and time.time() - self.started_at > timeout:
            if self.response_started:
                logger.warning("Application timed out while sending response")
                self.keep_alive = False
                self.handle_reply({"type": "http.response.body", "body": b""})
            else:
                self.basic_error(503, b"Service Unavailable", "Application failed to respond within time limit.")

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        if self.response_started:
            self.channel.abort()
            return
        self.handle_reply(
            {"type": "http.response.start", "status": status, "headers": [(b"Content-Type", b"text/html; charset=utf-8")]}
        )
        self.handle_reply({"type": "http.response.body", "body": error_page(status, status_text, body)})


class HttpChannel(twisted_protocol.Protocol):
    """One client connection: httptools parses, each request becomes an :class:`Exchange`."""

    def __init__(self, server) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.gone = False
        self.paused = False
        self.current: Exchange | None = None  # the request being parsed
        self.active: Exchange | None = None  # the request being answered
        self.waiting: deque[Exchange] = deque()  # pipelined requests, answered in order
        self.url = b""
        self.headers: list = []
        self.header_bytes = 0
        self.upgrade = False
        self.expect_continue = False
        self.too_large: RequestTooLarge | None = None
        self.ignore_input = False  # after a refused (non-WebSocket) upgrade
        self.starting = False  # exchange_finished is starting the requests that waited
        self.discarding = 0  # bytes of an unread body drained after an early answer
        self.client_addr = self.server_addr = None
        self.scheme = "http"
        self.last_activity = time.monotonic()

    def connectionMade(self) -> None:
        transport = self.transport
        peer, host = transport.getPeer(), transport.getHost()
        if hasattr(peer, "host") and hasattr(peer, "port"):
            self.client_addr = [str(peer.host), peer.port]
            self.server_addr = [str(host.host), host.port]
        if ISSLTransport.providedBy(transport):
            self.scheme = "https"
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
        channels_watch(self)

    # --- bytes in ---------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.gone or self.ignore_input:
            if self.discarding:
                self.discarding += len(data)
                if self.discarding > DISCARD_LIMIT:
                    self.transport.abortConnection()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded(data[upgrade.args[0]:] if upgrade.args else b"")
        except httptools.HttpParserError:
            too_large = self.too_large  # raised in a callback, which httptools reports as a parser error
            if too_large is not None:
                self.refuse(too_large.status, too_large.reason, too_large.detail)
            else:
                self.refuse(400, b"Bad Request", "Malformed HTTP request")

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.upgrade = False
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            self.too_large = RequestTooLarge(414, b"URI Too Long", "The request line is too long")
            raise self.too_large

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADERS:
            self.too_large = RequestTooLarge(431, b"Request Header Fields Too Large", "The request headers are too large")
            raise self.too_large
        lowered = name.lower()
        if lowered == b"upgrade" and value.lower() == b"websocket":
            self.upgrade = True
        elif lowered == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if self.gone:
            return
        if parser.should_upgrade():
            if self.upgrade:
                self.current = None  # handed to the WebSocket protocol when the parser stops
                return
            for name, value in self.headers:
                lowered = name.lower()
                if lowered == b"transfer-encoding" or (lowered == b"content-length" and value.strip() != b"0"):
                    # llhttp does not read the body of an upgrade request; the upgrade is not offered
                    self.too_large = RequestTooLarge(400, b"Bad Request", "Unsupported upgrade")
                    raise self.too_large
        exchange = Exchange(
            self,
            parser.get_method(),
            parser.get_http_version().encode("ascii"),
            self.url,
            self.headers,
            keep_alive=parser.should_keep_alive(),
            expect_continue=self.expect_continue,
        )
        self.headers = []  # a chunked body's trailer fields land here, not in the request's headers
        self.current = exchange
        if self.active is None:
            self.active = exchange
            exchange.start()
        else:
            self.waiting.append(exchange)
            self.reading_pause()

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.body_received(body)

    def on_message_complete(self) -> None:
        exchange, self.current = self.current, None
        if exchange is not None:
            exchange.body_complete()

    # --- bytes out --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send now when nothing is queued (one ``send``); what does not fit waits in Twisted's buffer."""
        transport = self.transport
        if type(transport) is tcp.Server and not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # Twisted's own write reports the failure and closes
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def exchange_finished(self, exchange: Exchange) -> None:
        if exchange is not self.active:
            return
        self.active = None
        if not exchange.body_done:
            # answered before its body was read: send the answer and the end of the stream, drain
            # what is still coming for a while (closing with unread bytes would be a reset, which
            # can lose the answer at the client), then close
            self.gone = True
            transport = self.transport
            if not hasattr(transport, "loseWriteConnection"):
                transport.loseConnection()
                return
            self.discarding = 1
            transport.loseWriteConnection()
            transport.resumeProducing()
            from twisted.internet import reactor

            reactor.callLater(DISCARD_SECONDS, transport.loseConnection)
            return
        if not exchange.keep_alive:
            self.transport.loseConnection()
            self.gone = True
            return
        if self.starting:
            return  # the loop below, further up the stack, starts the next one
        self.starting = True
        try:
            while self.active is None and self.waiting and not self.gone:
                self.active = self.waiting.popleft()
                self.active.start()
        finally:
            self.starting = False
        if not self.waiting:
            self.reading_resume()

    def reading_pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def reading_resume(self) -> None:
        if self.paused and not self.gone:
            self.paused = False
            self.transport.resumeProducing()

    # --- ends -------------------------------------------------------------------------------

    def refuse(self, status: int, reason: bytes, detail: str) -> None:
        """A request that cannot be parsed: an error page if no answer is under way, then close."""
        if self.active is None:  # otherwise an answer is owed first: the connection just closes
            body = error_page(status, reason, detail)
            self.write(
                status_line(b"1.1", status)
                + b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                + body
            )
        self.transport.loseConnection()
        self.gone = True

    def abort(self) -> None:
        self.gone = True
        self.transport.abortConnection()

    def upgraded(self, rest: bytes) -> None:
        """A WebSocket handshake: hand the connection to Daphne's WebSocket protocol, as Daphne does."""
        if not self.upgrade:
            # another protocol (h2c, ...) is not offered: the request is answered over HTTP/1.1 (as
            # Daphne does) and the connection closes after it; nothing more is read from it
            last = self.waiting[-1] if self.waiting else self.active
            if last is not None:
                last.keep_alive = False
                if not last.body_done:
                    last.body_complete()
            self.reading_pause()
            self.gone = self.active is None  # with an answer owed, it is sent first; nothing more is read
            self.ignore_input = True
            if self.gone:
                self.transport.loseConnection()
            return
        if self.active is not None or self.waiting:
            # a handshake pipelined behind an unanswered request: not a WebSocket client; close
            # (connectionLost tells the waiting applications)
            self.transport.loseConnection()
            self.gone = True
            return
        server = self.server
        transport = self.transport
        method = self.parser.get_method()
        protocol = server.ws_factory.buildProtocol(transport.getPeer())
        if not protocol:
            self.refuse(500, b"Internal Server Error", "Could not make WebSocket protocol")
            return
        protocol._raw_query_string = self.url.partition(b"?")[2]
        self.gone = True
        channels_forget(self)
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        data = method + b" " + self.url + b" HTTP/1.1\r\n"
        for name, value in self.headers:
            data += name + b": " + value + b"\r\n"
        protocol.dataReceived(data + b"\r\n" + rest)
        if self.paused:
            transport.resumeProducing()

    def connectionLost(self, reason=None) -> None:
        self.gone = True
        channels_forget(self)
        for exchange in (self.active, *self.waiting):
            if exchange is None:
                continue
            if not exchange.response_done:
                exchange.response_done = True
                exchange.disconnect_send()
            if exchange in self.server.connections:
                self.server.protocol_disconnected(exchange)
        self.active = None
        self.waiting.clear()


class RequestTooLarge(Exception):
    def __init__(self, status: int, reason: bytes, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


# --- idle connections: one sweep a minute, not a timer per request ------------------------------

_channels: set[HttpChannel] = set()
_sweep_scheduled = False


def channels_watch(channel: HttpChannel) -> None:
    global _sweep_scheduled
    _channels.add(channel)
    if not _sweep_scheduled:
        from twisted.internet import reactor

        _sweep_scheduled = True
        reactor.callLater(60, idle_channels_close)


def channels_forget(channel: HttpChannel) -> None:
    _channels.discard(channel)


def idle_channels_close() -> None:
    from twisted.internet import reactor

    deadline = time.monotonic() - IDLE_TIMEOUT
    for channel in list(_channels):
        if channel.active is None and channel.last_activity < deadline:
            channel.transport.loseConnection()
            channels_forget(channel)
    reactor.callLater(60, idle_channels_close)


class HttpFactory(twisted_protocol.Factory):
    """Daphne's ``HTTPFactory``'s place in ``Server.run``: builds :class:`HttpChannel`."""

    def __init__(self, server) -> None:
        self.server = server

    def buildProtocol(self, addr) -> HttpChannel:
        channel = HttpChannel(self.server)
        channel.factory = self
        return channel


def install() -> bool:
    """Make ``daphne.server.Server.run`` build :class:`HttpFactory` (before the server runs)."""
    import daphne.server

    if daphne.server.HTTPFactory is HttpFactory:
        return False
    daphne.server.HTTPFactory = HttpFactory
    return True
