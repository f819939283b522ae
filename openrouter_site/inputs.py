"""The one place untrusted bytes become values: JSON bodies and integer query parameters.

Every API (the gateway, the DRF views, the pages' JSON endpoints, the webhooks) reads its JSON
and its integer query parameters through these, so every malformed input fails the same way,
with a 400 (or 413) in OpenRouter's envelope, and never reaches code that could raise anything
else:

* JSON is parsed by orjson, which refuses invalid UTF-8, lone surrogates (``"\\ud800"``),
  numbers that overflow a double (``1e999``) and nesting past 1024 levels; then the value must
  not be nested deeper than ``MAX_JSON_DEPTH``, so that whatever we build from it can always be
  written back (orjson's writer stops at 255 levels) and walked without recursion limits.
* The DRF views' bodies (every one of them is stored: keys, BYOK, guardrails, presets, orgs)
  must not hold a NUL character in any string, key or value, at any depth: PostgreSQL's text and
  jsonb columns cannot store it. The gateway's own bodies are not stored as text and keep it.
* Integer query parameters are ASCII digits only (``int("²")`` raises, ``"٣".isdigit()`` holds)
  within explicit bounds, so nothing larger than a 64-bit column ever reaches the database.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from django.http import QueryDict
from rest_framework.parsers import BaseParser

from .errors import BadRequest, InvalidJson, PayloadTooLarge

# Deep enough for any real request (a JSON Schema nested thirty objects deep is about 64 levels);
# far enough below orjson's writer limit (255) that a provider body built around it still fits.
MAX_JSON_DEPTH = 128
# Offsets, limits and ids: anything above this is not a row we could have.
MAX_QUERY_INT = 2**53
_ASCII_INT = re.compile(r"-?[0-9]{1,18}")  # always within a signed 64-bit column


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``limit`` (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_loads(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, what: str = "request body") -> Any:
    """Parse untrusted JSON: 400 ``InvalidJson`` for anything orjson refuses or nested past ``max_depth``."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = exc.args[0] if exc.args else "malformed"
        raise InvalidJson(f"Invalid JSON in {what}: {reason}") from None
    if json_depth_exceeds(value, max_depth):
        raise InvalidJson(f"Invalid JSON in {what}: nested deeper than {max_depth} levels")
    return value


def json_has_nul(value: Any) -> bool:
    """Whether any string in ``value`` (object keys included) holds a NUL character (iterative)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def body_size_check(size: int | None, limit: int) -> None:
    """413 when a body (declared or read so far) is over ``limit`` bytes."""
    if size is not None and size > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes")


def declared_length(value: bytes | str | None) -> int | None:
    """A Content-Length header's value, or None when it is absent or not a plain ASCII number."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else None


def int_text(raw: str) -> int | None:
    """``raw`` as an int if it is 1-18 ASCII digits (optionally negative), else None."""
    return int(raw) if isinstance(raw, str) and _ASCII_INT.fullmatch(raw) else None


def query_int(
    query: QueryDict | dict,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_QUERY_INT,
    message: str | None = None,
) -> int | None:
    """An integer query parameter within [minimum, maximum]; ``default`` when absent or empty; 400 otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = int_text(raw)
    if value is None or not minimum <= value <= maximum:
        raise BadRequest(
            message or f"Invalid query parameter {name}: expected an integer between {minimum} and {maximum}, got {raw[:40]!r}"
        )
    return value


class JsonParser(BaseParser):
    """``application/json`` for the DRF views: the same rules as every other JSON body here."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        from django.conf import settings

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = b"" if stream is None else stream.read() if limit is None else stream.read(limit + 1)
        body_size_check(len(raw), limit if limit is not None else len(raw))
        value = json_loads(raw)
        # JSON can only spell NUL as an escape, so a body without one needs no walk.
        if b"\\u0000" in raw and json_has_nul(value):
            raise BadRequest("Strings in the request body must not contain NUL (\\u0000) characters")
        return value


class BodyLimit:
    """ASGI middleware in front of Django: a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413 in the envelope.

    Django's ASGI handler reads a whole body before any view runs, and only refuses it (if at all)
    when a view touches it. Here a declared ``Content-Length`` over the limit is answered before a
    byte is read; a body without one (chunked) is read up to the limit and handed on, or drained
    and answered 413. The gateway's routes enforce their own, larger limit.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        from django.conf import settings

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:
            await self.app(scope, receive, send)
            return
        length = None
        has_length = False
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                has_length = True
                length = declared_length(value)
        if has_length:
            if length is not None and length > limit:
                await _send_error(send, PayloadTooLarge(f"Request body is larger than {limit} bytes"))
                return
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _drain(receive, message)
                await _send_error(send, PayloadTooLarge(f"Request body is larger than {limit} bytes"))
                return
            if not message.get("more_body"):
                break
        replay = iter(messages)

        async def replayed():
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


async def _drain(receive, message) -> None:
    while message["type"] == "http.request" and message.get("more_body"):
        message = await receive()


async def _send_error(send, exc) -> None:
    body = orjson.dumps(exc.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
