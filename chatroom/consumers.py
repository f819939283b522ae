"""The chatroom's socket: one per page, authenticated by the session, several models answering at once.

Each column of a ``send`` frame is one gateway call (``routing.gateway.session_call_run``: the same code
as ``POST /api/v1/chat/completions``, its holds, fallbacks, settlement and generation record), run
concurrently; its stream chunks go to the page tagged with the column's id. ``stop`` (or closing the
socket) cancels the upstream requests; only what was delivered is charged.

Back-pressure: the page acknowledges the frames it has handled; past ``CHATROOM_WINDOW_FRAMES``
unacknowledged frames the columns wait before sending more, so they stop reading their providers
(whose streams then wait in TCP) instead of the server buffering without bound for a slow page.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.keycache import session_key_info
from accounts.selectors import account_for_user
from accounts.services import account_get_or_create_personal
from billing.money import nanos_to_usd_string
from routing.gateway import session_call_run

from .frames import Ack, Column, FrameError, Send, Stop, frame_parse

logger = logging.getLogger("openrouter.chatroom")

APP_TITLE = "Chatroom"
FORBIDDEN_ORIGIN = 4403
UNAUTHENTICATED = 4401


class ColumnSink:
    """Where one column's gateway call sends its events: frames tagged with the column's id."""

    __slots__ = ("consumer", "column_id", "prefix", "failed")

    def __init__(self, consumer: ChatConsumer, column_id: str) -> None:
        self.consumer = consumer
        self.column_id = column_id
        self.failed = False  # refused before its stream started: the error frame ends the column
        self.prefix = b'{"type":"chunks","column":"' + column_id.encode() + b'","data":['

    async def events(self, payloads: list[bytes]) -> None:
        await self.consumer.frame_send(self.prefix + b",".join(payloads) + b"]}")

    async def error(self, status: int, body: bytes) -> None:
        self.failed = True
        try:
            error = orjson.loads(body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            error = {}
        await self.consumer.error_send(self.column_id, status, error.get("message") or "The request failed", error.get("metadata"))


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.account_id: int | None = None
        self.running: dict[str, tuple[asyncio.Task, asyncio.Event]] = {}
        self.sent = 0
        self.acked = 0
        self.window = asyncio.Event()
        self.window.set()
        self.closed = False
        if not self.origin_allowed():
            await self.close(code=FORBIDDEN_ORIGIN)  # before accepting: the handshake is refused (403)
            return
        self.account_id = await database_sync_to_async(self._account_id)()
        await self.accept()
        if self.account_id is None:
            await self.error_send(None, 401, "Sign in to use the chatroom.", {"login": True})
            await self.close(code=UNAUTHENTICATED)
            return
        await self.json_send(
            {
                "type": "ready",
                "max_models": settings.CHATROOM_MAX_MODELS,
                "max_frame_bytes": settings.CHATROOM_MAX_FRAME_BYTES,
                "window": settings.CHATROOM_WINDOW_FRAMES,
            }
        )

    def _account_id(self) -> int | None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        account = account_for_user(user=user) or account_get_or_create_personal(user=user)
        return account.id

    def origin_allowed(self) -> bool:
        """The page's own origin (the socket's Host) or one of ``CSRF_TRUSTED_ORIGINS``: another site's
        page cannot open a socket with the user's cookies (cross-site WebSocket hijacking)."""
        headers = dict(self.scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        if not origin or origin == "null":
            return False
        if origin in settings.CSRF_TRUSTED_ORIGINS:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host

    async def disconnect(self, code) -> None:
        self.closed = True
        self.window.set()
        running = list(self.running.values())
        for _task, stop in running:
            stop.set()
        if running:  # the calls settle (charge what was delivered, write their records) before the consumer ends
            await asyncio.gather(*(task for task, _stop in running), return_exceptions=True)

    # --- from the page -------------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.account_id is None:
            return
        try:
            frame = frame_parse(
                text_data, max_bytes=settings.CHATROOM_MAX_FRAME_BYTES, max_models=settings.CHATROOM_MAX_MODELS
            )
        except FrameError as exc:
            await self.error_send(exc.column, exc.status, exc.message)
            return
        if isinstance(frame, Ack):
            self.acked = max(self.acked, min(frame.frames, self.sent))
            if self.sent - self.acked < settings.CHATROOM_WINDOW_FRAMES:
                self.window.set()
        elif isinstance(frame, Stop):
            for column_id, (_task, stop) in list(self.running.items()):
                if frame.column is None or frame.column == column_id:
                    stop.set()
        elif isinstance(frame, Send):
            await self.columns_start(frame)

    async def columns_start(self, frame: Send) -> None:
        busy = [c.id for c in frame.columns if c.id in self.running]
        if busy:
            await self.error_send(busy[0], 409, "This column is still answering; stop it or wait for it to finish")
            return
        if len(self.running) + len(frame.columns) > settings.CHATROOM_MAX_RUNNING:
            for column in frame.columns:
                await self.error_send(
                    column.id, 429,
                    f"{len(self.running)} answers are still streaming on this page (at most "
                    f"{settings.CHATROOM_MAX_RUNNING} at once); stop one or wait for it to finish",
                )
            return
        key = await session_key_info(self.account_id)
        if key is None:
            await self.error_send(None, 401, "Your account was not found; sign in again.", {"login": True})
            return
        headers = self.call_headers()
        for column in frame.columns:
            stop = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self.column_run(column, key, headers, stop))
            self.running[column.id] = (task, stop)

    def call_headers(self) -> dict[str, str]:
        headers = dict(self.scope.get("headers") or [])
        return {
            "x-title": APP_TITLE,
            "http-referer": headers.get(b"origin", b"").decode("latin-1"),
            "user-agent": headers.get(b"user-agent", b"").decode("latin-1")[:500],
            "host": headers.get(b"host", b"localhost").decode("latin-1"),
        }

    async def column_run(self, column: Column, key, headers: dict[str, str], stop: asyncio.Event) -> None:
        try:
            sink = ColumnSink(self, column.id)
            outcome = await session_call_run(key=key, body=column.body(), sink=sink, stop=stop, headers=headers)
            if sink.failed:
                return
            await self.json_send(
                {
                    "type": "done",
                    "column": column.id,
                    "generation_id": outcome.generation_id,
                    "model": outcome.model,
                    "provider": outcome.provider,
                    "usage": {
                        "prompt_tokens": outcome.prompt_tokens,
                        "completion_tokens": outcome.completion_tokens,
                        "reasoning_tokens": outcome.reasoning_tokens,
                    },
                    "cost_nanos": outcome.charged,
                    "cost": nanos_to_usd_string(outcome.charged),
                    "stopped": outcome.stopped,
                }
            )
        except Exception:
            logger.exception("chatroom column %s failed", column.id)
            await self.error_send(column.id, 500, "Something went wrong on our side; nothing more was charged")
        finally:
            self.running.pop(column.id, None)

    # --- to the page ---------------------------------------------------------------------------------

    async def frame_send(self, frame: bytes) -> None:
        """One frame, once the page has acknowledged enough of the earlier ones (bounded buffering)."""
        while not self.closed and self.sent - self.acked >= settings.CHATROOM_WINDOW_FRAMES:
            self.window.clear()
            await self.window.wait()
        if self.closed:
            return
        self.sent += 1
        await self.send(text_data=frame.decode("utf-8"))

    async def json_send(self, payload: dict) -> None:
        await self.frame_send(orjson.dumps(payload))

    async def error_send(self, column: str | None, status: int, message: str, metadata: dict | None = None) -> None:
        error: dict = {"code": status, "message": message}
        if metadata:
            error["metadata"] = metadata
        frame: dict = {"type": "error", "error": error}
        if column is not None:
            frame["column"] = column
        if self.closed:
            return
        self.sent += 1  # errors skip the window: they are few and the page must see them
        await self.send(text_data=orjson.dumps(frame).decode())
