"""Shared Redis connections (only when REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections import deque

import hiredis
import redis
import redis.asyncio as aredis
from django.conf import settings

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
POOL_WAIT_SECONDS = 10  # a command that waits longer for a free connection fails (ConnectionError)
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = weakref.WeakKeyDictionary()


def redis_enabled() -> bool:
    return bool(settings.REDIS_URL)


def sync_client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL)
    return _sync_client


def async_client() -> aredis.Redis:
    """One client (and pool) per event loop: the ASGI server's loop in practice.

    The pool is bounded and blocking: a burst of requests waits a moment for one of
    ``REDIS_ASYNC_POOL_SIZE`` connections instead of each opening its own (500 requests
    opening 500 connections at once took 1-2 s on a 2-core machine; ``bench/burst.py``).
    No ``CLIENT SETINFO`` on connect: one round trip less per connection.
    """
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_ASYNC_POOL_SIZE,
            timeout=POOL_WAIT_SECONDS,
            lib_name=None,
            lib_version=None,
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


# --- the hot path's script client ----------------------------------------------------------------


class ScriptClient:
    """The hot path's Redis client: one connection per event loop, every command pipelined over it.

    redis-py's asyncio client spends about 100-150 µs of CPU per command on this machine kind
    (connection-pool checkout, retry and parser layers, measured with ``time.process_time``); the
    credit hold (and a free model's rate limit) is one script call per request, so it goes over
    this instead: a command is packed, written, and its future resolved in order by one reader
    task that parses replies with hiredis. The commands issued during one turn of the event loop
    (concurrent requests' holds and sticky lookups) leave in one write, at the end of that turn:
    a ``send`` to Redis is a system call, and per command they were about a tenth of a request's
    CPU at c=16. A caller cancelled while waiting leaves its reply to be
    read and dropped; a broken connection fails every command waiting on it (the next command
    reconnects).
    """

    def __init__(self, url: str) -> None:
        options = redis.connection.parse_url(url)
        self.host = options.get("host", "localhost")
        self.port = int(options.get("port", 6379))
        self.handshake: list[tuple] = []
        if options.get("password"):
            auth = (options["username"], options["password"]) if options.get("username") else (options["password"],)
            self.handshake.append(("AUTH", *auth))
        if options.get("db"):
            self.handshake.append(("SELECT", options["db"]))
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._shas: dict[str, str] = {}

    async def execute(self, *args):
        conn = self._conn
        if conn is None or conn.broken:
            conn = await self._connect()
        future = asyncio.get_running_loop().create_future()
        conn.pending.append(future)
        conn.send(_pack(args))
        reply = await future
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    async def evalsha(self, source: str, keys: list, args: list):
        """Run a Lua script by its SHA1, loading it once if the server does not know it."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.execute("SCRIPT", "LOAD", source)
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.broken:
                return self._conn
            reader, writer = await asyncio.open_connection(self.host, self.port)
            conn = _Connection(reader, writer)
            for command in self.handshake:
                future = asyncio.get_running_loop().create_future()
                conn.pending.append(future)
                writer.write(_pack(command))
                if conn.listener is None:
                    conn.listener = asyncio.get_running_loop().create_task(conn.listen())
                reply = await future
                if isinstance(reply, hiredis.ReplyError):
                    conn.close()
                    raise redis.ResponseError(str(reply))
            if conn.listener is None:
                conn.listener = asyncio.get_running_loop().create_task(conn.listen())
            self._conn = conn
            return conn


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()
        self.pending: deque[asyncio.Future] = deque()
        self.listener: asyncio.Task | None = None
        self.broken = False
        self.outgoing: list[bytes] = []  # commands of this turn of the loop, written together by flush()

    def send(self, command: bytes) -> None:
        outgoing = self.outgoing
        outgoing.append(command)
        if len(outgoing) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        commands = b"".join(self.outgoing)
        self.outgoing.clear()
        if not self.broken:  # else the listener has failed every waiting command
            self.writer.write(commands)

    async def listen(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not False:
                    future = self.pending.popleft()
                    if not future.done():
                        future.set_result(reply)
        except BaseException as exc:
            self.close()
            error = exc if isinstance(exc, Exception) else ConnectionError("Redis connection closed")
            while self.pending:
                future = self.pending.popleft()
                if not future.done():
                    future.set_exception(redis.ConnectionError(str(error) or type(error).__name__))
            if not isinstance(exc, Exception):
                raise

    def close(self) -> None:
        self.broken = True
        self.writer.close()


def _pack(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


_script_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ScriptClient] = weakref.WeakKeyDictionary()


def script_client() -> ScriptClient:
    """The running event loop's script client (see ScriptClient)."""
    loop = asyncio.get_running_loop()
    client = _script_clients.get(loop)
    if client is None:
        client = _script_clients[loop] = ScriptClient(settings.REDIS_URL)
    return client
