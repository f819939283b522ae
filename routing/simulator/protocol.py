"""OpenAI wire format: request parsing/validation and response (JSON and SSE) encoding.

Two endpoint kinds are supported: ``chat`` (``/chat/completions``) and ``text`` (the legacy
``/completions``). Parsing yields a :class:`Job` that holds everything the server needs to
answer, including the reply tokens, so the hot path only encodes bytes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .config import ProviderSettings
from .text import forced_length, generate_tokens, natural_length, seed_for
from .tokens import content_text_parts, count_message_tokens, count_prompt_tokens

CHAT = "chat"
TEXT = "text"
FINGERPRINT = "fp_sim"
_SENTINEL = "\u2063sim-token\u2063"
DONE = b"data: [DONE]\n\n"


class RequestError(ValueError):
    """A request the simulator answers with 400."""

    def __init__(self, message: str, param: str | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


@dataclass(slots=True)
class Job:
    """A validated request and its planned reply."""

    kind: str
    model: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    tokens: tuple[str, ...]
    finish_reason: str | None
    id: str
    created: int

    @property
    def output_tokens(self) -> int:
        """Tokens the reply costs (every unit an encoder writes is one token)."""
        return len(self.tokens)

    def make_empty(self) -> None:
        """Turn the reply into the ``empty`` failure: no content, no finish reason."""
        self.tokens = ()
        self.finish_reason = None


# --- request parsing -------------------------------------------------------------------------


def _optional_count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(f"'{key}' must be a non-negative integer", key)
    return value


def _token_cap(body: dict[str, Any]) -> int | None:
    caps = [
        cap
        for cap in (_optional_count(body, "max_tokens"), _optional_count(body, "max_completion_tokens"))
        if cap is not None
    ]
    return min(caps) if caps else None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required and must be a non-empty string", "model")
    return model


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    return stream, options.get("include_usage") is True


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' is required and must be a non-empty array", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{index}] must be an object", "messages")
        if not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{index}].role must be a string", "messages")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise RequestError(f"messages[{index}].content must be a string, an array or null", "messages")
    return messages


def _prompt(body: dict[str, Any]) -> str | list[Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(item, str | int | list) and not isinstance(item, bool) for item in prompt)
    ):
        return prompt
    raise RequestError("'prompt' is required and must be a string or an array", "prompt")


def reply_plan(
    slug: str, model: str, prompt_text: str, control_text: str, settings: ProviderSettings, cap: int | None
) -> tuple[tuple[str, ...], str]:
    """The reply tokens and finish reason for a prompt."""
    seed = seed_for(slug, model, prompt_text)
    length = forced_length(control_text) if "[sim:" in control_text else None
    if length is None:
        length = settings.completion_tokens if settings.completion_tokens is not None else natural_length(seed)
    if cap is not None and length > cap:
        # The first ``cap`` tokens of any longer reply for this seed.
        return generate_tokens(seed, cap + 1)[:cap], "length"
    return generate_tokens(seed, length), "stop"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def parse_chat(body: Any, slug: str, settings: ProviderSettings) -> Job:
    """Validate a Chat Completions request body and plan its reply."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = _model(body)
    messages = _messages(body)
    stream, include_usage = _stream_flags(body)
    cap = _token_cap(body)
    texts: list[str] = []
    last_user = ""
    for message in messages:
        text = "".join(content_text_parts(message.get("content")))
        texts.append(message["role"] + "\x1f" + text)
        if message["role"] == "user":
            last_user = text
    tokens, finish = reply_plan(slug, model, "\x1e".join(texts), last_user, settings, cap)
    return Job(
        CHAT,
        model,
        stream,
        include_usage,
        count_message_tokens(messages),
        tokens,
        finish,
        new_id("chatcmpl-"),
        int(time.time()),
    )


def parse_text(body: Any, slug: str, settings: ProviderSettings) -> Job:
    """Validate a legacy Completions request body and plan its reply."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = _model(body)
    prompt = _prompt(body)
    stream, include_usage = _stream_flags(body)
    cap = _token_cap(body)
    if isinstance(prompt, str):
        text = prompt
    else:
        text = "\x1e".join(item if isinstance(item, str) else orjson.dumps(item).decode() for item in prompt)
    last = prompt if isinstance(prompt, str) else (prompt[-1] if isinstance(prompt[-1], str) else "")
    tokens, finish = reply_plan(slug, model, text, last, settings, cap)
    return Job(
        TEXT,
        model,
        stream,
        include_usage,
        count_prompt_tokens(prompt),
        tokens,
        finish,
        new_id("cmpl-"),
        int(time.time()),
    )


# --- responses ---------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def completion_body(job: Job) -> bytes:
    """The non-streaming response body."""
    content = "".join(job.tokens)
    if job.kind == CHAT:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": job.finish_reason,
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {"text": content, "index": 0, "logprobs": None, "finish_reason": job.finish_reason}
        obj = "text_completion"
    return orjson.dumps(
        {
            "id": job.id,
            "object": obj,
            "created": job.created,
            "model": job.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
            "usage": usage(job.prompt_tokens, len(job.tokens)),
        }
    )


class SseEncoder:
    """Encodes the SSE events of one streamed reply.

    Content events are built from a precomputed head/tail around the JSON-encoded token, so
    each token costs one small ``orjson.dumps`` and a concatenation.
    """

    __slots__ = ("job", "_base", "_head", "_tail")

    def __init__(self, job: Job) -> None:
        self.job = job
        obj = "chat.completion.chunk" if job.kind == CHAT else "text_completion"
        self._base = {
            "id": job.id,
            "object": obj,
            "created": job.created,
            "model": job.model,
            "system_fingerprint": FINGERPRINT,
        }
        template = self._event(self._choice(_SENTINEL, None))
        head, _, tail = template.rpartition(orjson.dumps(_SENTINEL))
        self._head = head
        self._tail = tail

    def _choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if self.job.kind == CHAT:
            delta = {} if text is None else {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}

    def _event(self, choice: dict[str, Any] | None, usage_obj: dict[str, Any] | None = None) -> bytes:
        payload: dict[str, Any] = {**self._base, "choices": [] if choice is None else [choice]}
        if self.job.include_usage:
            payload["usage"] = usage_obj
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    @property
    def units(self) -> tuple[str, ...]:
        """What ``content`` is called with, one token each, in order."""
        return self.job.tokens

    def opening(self) -> bytes:
        """The first event (chat: the assistant role with empty content; text: nothing)."""
        if self.job.kind != CHAT:
            return b""
        return self._event(
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        )

    def content(self, token: str) -> bytes:
        return self._head + orjson.dumps(token) + self._tail

    def closing(self, sent_tokens: int) -> bytes:
        """Finish-reason event (when there is one), usage event (when asked), and [DONE]."""
        job = self.job
        parts = []
        if job.finish_reason is not None:
            parts.append(self._event(self._choice(None, job.finish_reason)))
        if job.include_usage:
            parts.append(self._event(None, usage(job.prompt_tokens, sent_tokens)))
        parts.append(DONE)
        return b"".join(parts)
