"""Prompt logging: what a generation was asked and answered, kept encrypted for its owner.

Only for accounts that opted in (``Account.allow_training_discount``, the 1% discount; off by default).
The gateway hands over the raw request body and the bytes it sent back (``content_submit``), after the
response is out; a background thread turns them into ``{"input", "output", "error"}`` (the shape of
``GET /generation/content``), encrypts that with Fernet and inserts it (``activity.services``). No work
on the event loop beyond a queue put, and no transaction open across network I/O.

Keys: ``settings.PROMPT_LOG_KEYS`` (env ``PROMPT_LOG_KEYS``, comma-separated Fernet keys; the first
encrypts, all decrypt, so keys rotate); unset, a key derived from ``SECRET_KEY`` (an install secret, see
``openrouter_site/install_secrets.py``) with HKDF. Rows expire after ``PROMPT_LOG_RETENTION_DAYS`` and are
purged by the ``activity.tasks.generation_contents_purge`` Celery beat task.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("openrouter.content_log")

MAX_CAPTURE_BYTES = 4 * 1024 * 1024  # a response longer than this is stored cut (the gateway stops copying)
BATCH = 100
__all__ = ["ContentItem", "InvalidToken", "content_decrypt", "content_extract", "content_flush", "content_submit"]


@dataclass(frozen=True, slots=True)
class ContentItem:
    generation_id: str
    account_id: int
    created_at: dt.datetime
    surface: str  # the API: "chat", "completions", "messages", "responses", "embeddings"
    request: bytes  # the body as the client sent it
    response: bytes  # what the gateway sent back (a JSON body or the SSE stream)
    status: int


# --- encryption ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"openrouter-prompt-log",
                   info=b"prompt-log-key-v1").derive(secret_key.encode())
        return MultiFernet([Fernet(base64.urlsafe_b64encode(raw))])
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured("PROMPT_LOG_KEYS: each key must be a Fernet key (32 url-safe base64 bytes)") from None


def _current() -> MultiFernet:
    return _fernet(tuple(settings.PROMPT_LOG_KEYS), settings.SECRET_KEY)


def content_encrypt(content: dict) -> str:
    return _current().encrypt(orjson.dumps(content)).decode("ascii")


def content_decrypt(token: str) -> dict:
    """The stored content; ``InvalidToken`` when no configured key opens it."""
    return orjson.loads(_current().decrypt(token.encode("ascii")))


# --- what was asked and answered ----------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _input(body: Any) -> dict:
    if not isinstance(body, dict):
        return {"messages": []}
    messages = body.get("messages")
    if isinstance(messages, list):
        system = body.get("system")  # Anthropic Messages
        if system:
            return {"messages": [{"role": "system", "content": system}, *messages]}
        return {"messages": messages}
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            prefix = body.get("instructions")
            return {"messages": [{"role": "system", "content": prefix}, {"role": "user", "content": value}]} if (
                isinstance(prefix, str) and prefix) else {"prompt": value}
        if isinstance(value, list):
            if value and all(isinstance(v, str) for v in value):
                return {"prompt": "\n".join(value)}
            return {"messages": value}
    return {"messages": []}


class _Output:
    def __init__(self) -> None:
        self.completion: list[str] = []
        self.reasoning: list[str] = []
        self.error: dict | None = None

    def message(self, data: dict) -> None:
        """One JSON object of any surface (a whole answer, a chunk or a stream event)."""
        error = data.get("error")
        if isinstance(error, dict) and (data.get("type") == "error" or "choices" in data or "code" in error
                                        or data.get("object") is None):
            self.error = {"message": error.get("message"), "status": error.get("code") if isinstance(
                error.get("code"), int) else None}
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            for key in ("message", "delta"):
                part = choice.get(key)
                if isinstance(part, dict):
                    self.completion.append(_text(part.get("content")))
                    if isinstance(part.get("reasoning"), str):
                        self.reasoning.append(part["reasoning"])
            if isinstance(choice.get("text"), str):
                self.completion.append(choice["text"])
        kind = data.get("type")
        if kind == "message" and isinstance(data.get("content"), list):  # Anthropic Messages
            for block in data["content"]:
                if isinstance(block, dict) and block.get("type") == "text":
                    self.completion.append(block.get("text") or "")
                elif isinstance(block, dict) and block.get("type") == "thinking":
                    self.reasoning.append(block.get("thinking") or "")
        if kind == "content_block_delta" and isinstance(data.get("delta"), dict):
            delta = data["delta"]
            self.completion.append(delta.get("text") or "")
            self.reasoning.append(delta.get("thinking") or "")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self.completion.append(data["delta"])
        if kind == "response.reasoning_summary_text.delta" and isinstance(data.get("delta"), str):
            self.reasoning.append(data["delta"])
        if data.get("object") == "response" and isinstance(data.get("output"), list):  # Responses (whole)
            for item in data["output"]:
                if not isinstance(item, dict):
                    continue
                for part in item.get("content") or ():
                    if isinstance(part, dict) and part.get("type") == "output_text":
                        self.completion.append(part.get("text") or "")
                for part in item.get("summary") or ():
                    if isinstance(part, dict):
                        self.reasoning.append(part.get("text") or "")

    def result(self) -> dict:
        completion = "".join(self.completion)
        reasoning = "".join(self.reasoning)
        return {"completion": completion or None, "reasoning": reasoning or None}


def content_extract(item: ContentItem) -> dict:
    """``{"input", "output", "error"}`` from the raw request and response of any surface, JSON or SSE."""
    try:
        body = orjson.loads(item.request)
    except orjson.JSONDecodeError:
        body = None
    output = _Output()
    response = item.response
    if response.lstrip().startswith(b"{"):
        try:
            data = orjson.loads(response)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            output.message(data)
            if item.surface == "embeddings" and isinstance(data.get("data"), list):
                output.completion.append(f"[{len(data['data'])} embedding(s)]")
    else:
        for line in response.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                output.message(data)
    error = output.error
    if error is None and item.status >= 400:
        error = {"message": "Request failed", "status": item.status}
    return {"input": _input(body), "output": output.result(), "error": error}


# --- the writer thread ---------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[ContentItem] = queue.SimpleQueue()
        self.pending = 0
        self.condition = threading.Condition()
        self.thread: threading.Thread | None = None

    def submit(self, item: ContentItem) -> None:
        with self.condition:
            self.pending += 1
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="content-log-writer", daemon=True)
                self.thread.start()
        self.queue.put(item)

    def _run(self) -> None:
        from django.db import close_old_connections

        from .services import generation_contents_insert

        while True:
            batch = [self.queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                close_old_connections()
                rows = []
                for item in batch:
                    try:
                        rows.append((item, content_encrypt(content_extract(item))))
                    except Exception:
                        logger.exception("could not prepare the stored content of %s", item.generation_id)
                generation_contents_insert(rows=rows, retention_days=settings.PROMPT_LOG_RETENTION_DAYS)
            except Exception:
                logger.exception("could not store the content of %d generation(s)", len(batch))
            finally:
                with self.condition:
                    self.pending -= len(batch)
                    self.condition.notify_all()

    def flush(self, timeout: float) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: self.pending == 0, timeout=timeout)


_writer = _Writer()


def content_submit(item: ContentItem) -> None:
    """Store ``item`` in the background (returns at once)."""
    _writer.submit(item)


def content_flush(timeout: float = 10.0) -> bool:
    """Wait until everything submitted is written (tests, shutdown); False on timeout."""
    return _writer.flush(timeout)
