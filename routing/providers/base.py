"""The adapter interface, and the small helpers every dialect shares.

An adapter is stateless; a ``StreamTranslator`` holds the state of one streamed reply. Both
speak OpenAI on our side: ``parse_response`` returns a ``chat.completion`` dict and
``StreamTranslator.feed`` returns ``chat.completion.chunk`` dicts. In both, ``finish_reason`` is
the provider's own word (``end_turn``, ``MAX_TOKENS``...) so the gateway can report it as
``native_finish_reason``; ``ProviderAdapter.normalize_finish_reason`` gives the OpenAI word.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from openrouter_site.errors import BadRequest

logger = logging.getLogger("openrouter.providers")

DEFAULT_MAX_TOKENS = 4096  # when a dialect needs a limit and the request has none
EFFORT_RATIOS = {"max": 0.95, "xhigh": 0.95, "high": 0.8, "medium": 0.5, "low": 0.2, "minimal": 0.1}
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


class TranslationError(ValueError):
    """The request holds something the provider's dialect cannot express (a 400 for the client)."""


class InvalidRequest(BadRequest):
    """A request body no dialect can express (a 400 to the client, never a provider failure).

    The gateway validates every body at the door (``routing.request_parsing``), so this is only
    the adapters' own guard against anything that slips through: it leaves as a 400 in the
    envelope instead of a 500, or a 503 after every provider was tried.
    """


def guarded(request: Callable[..., UpstreamRequest]) -> Callable[..., UpstreamRequest]:
    """Wrap an adapter's ``request``: a malformed body is an ``InvalidRequest`` (400); a
    ``TranslationError`` (this dialect cannot say it; another may) passes through unchanged."""

    @functools.wraps(request)
    def wrapper(self, **kwargs) -> UpstreamRequest:
        try:
            return request(self, **kwargs)
        except TranslationError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            logger.warning("%s adapter refused a request the door let through: %r", self.dialect, exc)
            raise InvalidRequest(f"Invalid request: {str(exc)[:200] or type(exc).__name__}") from None

    return wrapper


class InvalidResponse(ValueError):
    """The provider answered 200 with something that is not a reply (a provider failure)."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


class StreamTranslator:
    """Turns a provider's SSE bytes, fed in any slices, into OpenAI chunk dicts.

    ``done`` is set once the provider says the reply is complete; ``failed`` (with ``error``)
    when it reports an error mid-stream. ``end()`` flushes a last event the provider did not
    terminate with a blank line. ``tool_calls`` counts the tool calls seen so far.
    """

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self.error: str | None = None
        self.tool_calls = 0
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict]:
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events, separator, self._buffer = buffer.rpartition(b"\n\n")
        return self._translate(events) if separator else []

    def end(self) -> list[dict]:
        rest, self._buffer = self._buffer, b""
        return self._translate(rest) if rest.strip() else []

    def _translate(self, events: bytes) -> list[dict]:
        out: list[dict] = []
        for line in events.split(b"\n"):
            if self.done:
                break
            if line.startswith(b"data:"):
                self.event(line[5:].strip(), out)
        return out

    def event(self, payload: bytes, out: list[dict]) -> None:
        """Translate one SSE ``data:`` payload, appending chunks to ``out``."""
        raise NotImplementedError

    def chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    def usage_chunk(self, usage: dict) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }

    def fail(self, message: str) -> None:
        self.failed = True
        self.done = True
        self.error = message


class ProviderAdapter:
    """One provider dialect. Subclasses implement the first three methods."""

    dialect = ""
    finish_reasons: Mapping[str, str] = FINISH_REASONS

    def request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str, stream: bool) -> UpstreamRequest:
        """The HTTP request for an OpenAI chat ``body`` (OpenRouter-only fields already removed)."""
        raise NotImplementedError

    def parse_response(self, payload: bytes) -> dict:
        """A non-streaming reply as an OpenAI ``chat.completion``. Raises InvalidResponse."""
        raise NotImplementedError

    def stream_translator(self) -> StreamTranslator:
        raise NotImplementedError

    def embeddings_request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str) -> UpstreamRequest:
        """The HTTP request for an OpenAI ``embeddings`` body; only dialects with an embeddings API have one."""
        raise TranslationError(f"the {self.dialect} dialect has no embeddings API")

    def parse_embeddings(self, payload: bytes) -> dict:
        """A reply to ``embeddings_request`` as OpenAI's embeddings ``list``. Raises InvalidResponse."""
        raise InvalidResponse("this dialect has no embeddings API")

    def parse_error(
        self, status: int, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[str, float | None]:
        """The provider's error message and its retry hint in seconds (``Retry-After``)."""
        data = json_object(payload)
        error = data.get("error") if data else None
        message = ""
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        return (message[:500] or f"Provider returned {status}"), retry_after(headers)

    def normalize_finish_reason(self, native: str | None, *, tool_calls: bool = False) -> str | None:
        """The OpenAI finish reason for a native one (a reply with tool calls ends in ``tool_calls``)."""
        if not native:
            return None
        reason = self.finish_reasons.get(native, self.finish_reasons.get(native.lower(), "stop"))
        return "tool_calls" if tool_calls and reason == "stop" else reason


# --- shared helpers ---------------------------------------------------------------------------


def json_object(payload: bytes) -> dict | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def count(value: Any) -> int:
    """A token count from a provider: a non-negative int, anything else is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def openai_usage(*, prompt: int, completion: int, cached: int = 0, cache_write: int = 0, reasoning: int = 0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def chat_completion(*, id: str, model: str, message: dict, finish_reason: str | None, usage: dict) -> dict:
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage,
    }


def assistant_message(texts: list[str], reasoning: list[str], details: list[dict], tool_calls: list[dict]) -> dict:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "reasoning": "".join(reasoning) if reasoning else None,
    }
    if details:
        message["reasoning_details"] = details
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def text_parts(content: Any) -> list[dict]:
    """A system/developer ``content`` as text parts (a string is one part); empty texts dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    return [p for p in content if isinstance(p, dict) and p.get("type") == "text" and p.get("text")]


def data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:`` URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if encoding.endswith("base64"):
        return media_type or "application/octet-stream", payload
    raw = urllib.parse.unquote_to_bytes(payload)
    return media_type or "text/plain", base64.b64encode(raw).decode()


def part_url(part: dict, key: str) -> str:
    """The URL of an ``image_url``/``video_url`` part (an object with ``url``, or a bare string)."""
    value = part.get(key)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise TranslationError(f"'{part.get('type')}' content part needs a URL")
    return url


def tool_arguments(raw: Any, name: str) -> dict:
    """A tool call's ``arguments`` (a JSON string) as the object the non-OpenAI dialects want."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise TranslationError(f"arguments of the call to tool '{name}' are not valid JSON") from None
    if not isinstance(value, dict):
        raise TranslationError(f"arguments of the call to tool '{name}' must be a JSON object")
    return value


def requested_max_tokens(body: dict) -> int | None:
    values = [body.get(key) for key in ("max_completion_tokens", "max_tokens")]
    values = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return min(values) if values else None


def reasoning_budget(body: dict, max_tokens: int) -> int | None:
    """The thinking budget the request asks for.

    None: not asked; 0: reasoning off; -1: on, at the provider's default; otherwise the token
    budget (``reasoning.max_tokens``, or ``reasoning.effort`` as a share of ``max_tokens``).
    """
    reasoning = body.get("reasoning")
    shorthand = body.get("reasoning_effort")
    if not isinstance(reasoning, dict):
        if not isinstance(shorthand, str):
            return None
        reasoning = {"effort": shorthand}
    if reasoning.get("enabled") is False:
        return 0
    budget = reasoning.get("max_tokens")
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= 0:
        return budget
    effort = reasoning.get("effort") or shorthand
    if effort == "none":
        return 0
    if effort in EFFORT_RATIOS:
        return max(int(max_tokens * EFFORT_RATIOS[effort]), 1)
    return -1


def reasoning_excluded(body: dict) -> bool:
    reasoning = body.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("exclude") is True
