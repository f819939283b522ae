"""What differs between the wire formats the simulator speaks, behind one small interface.

A :class:`Dialect` says how a request is authenticated and parsed into a job, how a reply and
its SSE events are encoded, and what errors look like. The server is the same for all of them
(latency, failure modes, pacing, stats). ``OPENAI_CHAT``/``OPENAI_TEXT`` wrap ``protocol``; the
Anthropic and Gemini dialects (``anthropic``, ``gemini``) plan their replies with
:func:`plan_turn`, which adds thinking tokens and a tool call to the ordinary reply text. So does
OpenAI chat when a request asks for ``reasoning`` or declares ``tools`` (the reasoning comes back
in the ``reasoning`` field, as OpenRouter-compatible providers send it); other chat requests keep
the plain fast path.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .config import ProviderSettings
from .protocol import (
    Job,
    RequestError,
    SseEncoder,
    completion_body,
    error_body,
    parse_chat,
    parse_text,
    reply_plan,
)
from .text import forced_tool, generate_tokens, natural_length, seed_for, tool_arguments
from .tokens import token_pieces

FAILURE_MESSAGES: dict[str, tuple[int, str]] = {
    "500": (500, "Simulated internal server error"),
    "502": (502, "Simulated bad gateway"),
    "503": (503, "Simulated service unavailable: the provider is overloaded"),
    "429": (429, "Simulated rate limit exceeded"),
}


class Encoder(Protocol):
    units: tuple[str, ...]

    def opening(self) -> bytes: ...

    def content(self, unit: str) -> bytes: ...

    def closing(self, sent: int) -> bytes: ...


class Dialect:
    """One wire format. ``failure`` gives (status, body, headers) for a failure mode."""

    auth_error: tuple[int, bytes] = (401, b"")

    def authorized(self, request: Any) -> bool:
        raise NotImplementedError

    def parse(self, body: Any, request: Any, state: Any) -> Job:
        raise NotImplementedError

    def body(self, job: Job) -> bytes:
        raise NotImplementedError

    def encoder(self, job: Job) -> Encoder:
        raise NotImplementedError

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        raise NotImplementedError

    def failure(self, mode: str, settings: ProviderSettings) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError


# --- OpenAI ---------------------------------------------------------------------------------------

OPENAI_FAILURES: dict[str, tuple[int, bytes]] = {
    "500": (500, error_body(FAILURE_MESSAGES["500"][1], "server_error", "internal_error")),
    "502": (502, error_body(FAILURE_MESSAGES["502"][1], "server_error", "bad_gateway")),
    "503": (503, error_body(FAILURE_MESSAGES["503"][1], "server_error", "service_unavailable")),
    "429": (429, error_body(FAILURE_MESSAGES["429"][1], "rate_limit_error", "rate_limit_exceeded")),
}
OPENAI_UNAUTHORIZED = error_body(
    "Missing or invalid Authorization header; expected 'Bearer <key>'", "invalid_request_error", "invalid_api_key"
)
NO_HEADERS: dict[str, str] = {}


class OpenAIDialect(Dialect):
    auth_error = (401, OPENAI_UNAUTHORIZED)

    def __init__(self, parse: Callable[[Any, str, ProviderSettings], Job]) -> None:
        self._parse = parse

    def authorized(self, request: Any) -> bool:
        header = request.headers.get("Authorization")
        return header is not None and len(header) > 7 and header[:7].lower() == "bearer " and not header[7:].isspace()

    def parse(self, body: Any, request: Any, state: Any) -> Job:
        return self._parse(body, state.slug, state.settings)

    def body(self, job: Job) -> bytes:
        return completion_body(job)

    def encoder(self, job: Job) -> SseEncoder:
        return SseEncoder(job)

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        code = "invalid_request" if status == 400 else "not_found"
        return error_body(message, "invalid_request_error", code, param)

    def failure(self, mode: str, settings: ProviderSettings) -> tuple[int, bytes, dict[str, str]]:
        status, body = OPENAI_FAILURES[mode]
        return status, body, {"Retry-After": f"{settings.retry_after:g}"} if mode == "429" else NO_HEADERS


OPENAI_TEXT = OpenAIDialect(parse_text)


# --- replies with thinking and tool calls -----------------------------------------------------------


@dataclass(slots=True)
class Turn(Job):
    """A job whose reply may start with thinking and end with a tool call.

    ``finish_reason`` is neutral here (``stop``, ``length``, ``tool`` or None); each dialect
    says it in its own words. Every unit (thinking token, text token, tool-argument piece)
    is exactly one token of the simulator's tokenizer.
    """

    reasoning: tuple[str, ...] = ()
    show_reasoning: bool = True
    tool_name: str = ""
    tool_id: str = ""
    tool_pieces: tuple[str, ...] = ()
    cache_read: int = 0
    cache_write: int = 0

    @property
    def output_tokens(self) -> int:
        return len(self.reasoning) + len(self.tokens) + len(self.tool_pieces)

    @property
    def units(self) -> tuple[str, ...]:
        return self.reasoning + self.tokens + self.tool_pieces

    @property
    def tool_input(self) -> dict[str, Any]:
        return orjson.loads("".join(self.tool_pieces)) if self.tool_pieces else {}

    @property
    def signature(self) -> str:
        """A stable stand-in for the provider's signature over the thinking."""
        digest = hashlib.blake2b("".join(self.reasoning).encode(), digest_size=32).digest()
        return base64.b64encode(digest).decode()

    def make_empty(self) -> None:
        self.tokens = ()
        self.reasoning = ()
        self.tool_pieces = ()
        self.finish_reason = None


def plan_turn(
    job: Turn,
    *,
    slug: str,
    prompt_text: str,
    control_text: str,
    settings: ProviderSettings,
    cap: int | None,
    thinking_budget: int | None,
    tools: dict[str, Any],
) -> Turn:
    """Fill in ``job``'s reply. ``thinking_budget``: None/0 no thinking, -1 the model's choice.

    Thinking comes first and counts against ``cap``; a ``[sim:tool=NAME]`` control calls tool
    NAME (when the request declares it) after the text, if it fits under the cap.
    """
    model = job.model
    if thinking_budget:
        seed = seed_for("thinking", slug, model, prompt_text)
        length = natural_length(seed)
        if thinking_budget > 0:
            length = min(length, thinking_budget)
        if cap is not None:
            length = min(length, cap)
        job.reasoning = generate_tokens(seed, length)
    remaining = None if cap is None else cap - len(job.reasoning)
    job.tokens, job.finish_reason = reply_plan(slug, model, prompt_text, control_text, settings, remaining)
    name = forced_tool(control_text) if "[sim:" in control_text else None
    if name is not None and name in tools and job.finish_reason == "stop":
        arguments = tool_arguments(seed_for("tool", slug, model, prompt_text), tools[name])
        pieces = token_pieces(orjson.dumps(arguments).decode())
        if remaining is None or len(job.tokens) + len(pieces) <= remaining:
            job.tool_name, job.tool_pieces, job.finish_reason = name, pieces, "tool"
            job.tool_id = "toolu_" + hashlib.blake2b(job.id.encode(), digest_size=12).hexdigest()
        else:
            job.finish_reason = "length"
    return job


def sse_template(event: dict[str, Any], sentinel: str, frame: Callable[[bytes], bytes]) -> tuple[bytes, bytes]:
    """Head and tail of an encoded event around ``sentinel``, so a token costs one ``dumps``."""
    head, _, tail = frame(orjson.dumps(event)).rpartition(orjson.dumps(sentinel))
    return head, tail


def require(condition: bool, message: str, param: str | None = None) -> None:
    if not condition:
        raise RequestError(message, param)


# --- OpenAI chat with thinking, tool calls and structured output ---------------------------------------

OPENAI_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}


def _openai_turn(body: Any, state: Any) -> Job:
    """A chat request that asks for reasoning, offers tools or wants a JSON schema answer, planned as a
    ``Turn`` (a ``[sim:tool=NAME]`` in the last user turn calls NAME); a plain one as a plain ``Job``."""
    job = parse_chat(body, state.slug, state.settings)
    tools = {
        tool["function"]["name"]: tool["function"].get("parameters") or {}
        for tool in body.get("tools") or ()
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict) and isinstance(tool["function"].get("name"), str)
    }
    reasoning = body.get("reasoning")
    thinking = isinstance(reasoning, dict) and reasoning.get("enabled") is not False and reasoning.get("effort") != "none"
    thinking = thinking or isinstance(body.get("reasoning_effort"), str)
    response_format = body.get("response_format")
    schema = None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    if not tools and not thinking and not isinstance(schema, dict):
        return job  # the fast path
    texts, last_user = [], ""
    for message in body["messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else "".join(
            p.get("text") or "" for p in content or () if isinstance(p, dict)
        )
        texts.append(message["role"] + "\x1f" + text)
        if message["role"] == "user":
            last_user = text
        elif message["role"] == "tool":
            last_user = ""  # the turn after a tool's result answers it: no new call
    caps = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if isinstance(v, int)]
    cap = min(caps) if caps else None
    turn = Turn(CHAT_KIND, job.model, job.stream, job.include_usage, job.prompt_tokens, (), None, job.id, job.created)
    prompt_text = "\x1e".join(texts)
    plan_turn(turn, slug=state.slug, prompt_text=prompt_text, control_text=last_user, settings=state.settings,
              cap=cap, thinking_budget=-1 if thinking else None, tools=tools)
    if isinstance(schema, dict):
        answer_with_schema(turn, schema, slug=state.slug, prompt_text=prompt_text, cap=cap)
    return turn


def answer_with_schema(turn: Turn, schema: dict, *, slug: str, prompt_text: str, cap: int | None) -> None:
    """Structured output: the reply text becomes deterministic JSON that fits ``schema`` (cut at the cap)."""
    if turn.finish_reason != "stop" or turn.tool_pieces:
        return
    value = tool_arguments(seed_for("json", slug, turn.model, prompt_text), schema)
    pieces = token_pieces(orjson.dumps(value).decode())
    remaining = None if cap is None else cap - len(turn.reasoning)
    turn.tokens = pieces if remaining is None or len(pieces) <= remaining else pieces[:remaining]
    turn.finish_reason = "stop" if len(turn.tokens) == len(pieces) else "length"


CHAT_KIND = "chat"


def _turn_usage(turn: Turn, sent: int) -> dict[str, Any]:
    reasoning = min(sent, len(turn.reasoning))
    return {
        "prompt_tokens": turn.prompt_tokens, "completion_tokens": sent, "total_tokens": turn.prompt_tokens + sent,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _turn_tool_call(turn: Turn, arguments: str) -> dict[str, Any]:
    return {"id": turn.tool_id, "type": "function", "function": {"name": turn.tool_name, "arguments": arguments}}


class OpenAITurnEncoder:
    """Chat chunks for a ``Turn``: reasoning deltas, content deltas, then one tool call's argument pieces."""

    __slots__ = ("job", "units", "position", "_base")

    def __init__(self, job: Turn) -> None:
        self.job = job
        self.units = job.units
        self.position = 0
        self._base = {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": job.model,
                      "system_fingerprint": "fp_sim"}

    def _event(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
        chunk: dict[str, Any] = dict(self._base)
        chunk["choices"] = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        ]
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def opening(self) -> bytes:
        return self._event({"role": "assistant", "content": ""})

    def content(self, unit: str) -> bytes:
        job, position = self.job, self.position
        self.position += 1
        thinking, text = len(job.reasoning), len(job.reasoning) + len(job.tokens)
        if position < thinking:
            detail = {"type": "reasoning.text", "text": unit, "format": "unknown", "index": 0}
            return self._event({"reasoning": unit, "reasoning_details": [detail]})
        if position < text:
            return self._event({"content": unit})
        call: dict[str, Any] = {"index": 0, "function": {"arguments": unit}}
        if position == text:
            call = {"index": 0, **_turn_tool_call(job, unit)}
        return self._event({"tool_calls": [call]})

    def closing(self, sent: int) -> bytes:
        job, parts = self.job, []
        if job.finish_reason is not None:
            parts.append(self._event({}, OPENAI_FINISH.get(job.finish_reason, job.finish_reason)))
        if job.include_usage:
            parts.append(self._event(None, usage=_turn_usage(job, sent)))
        parts.append(b"data: [DONE]\n\n")
        return b"".join(parts)


class OpenAITurnDialect(OpenAIDialect):
    """OpenAI chat; a request for reasoning, a tool call or a JSON schema answer gets a ``Turn`` reply."""

    def parse(self, body: Any, request: Any, state: Any) -> Job:
        return _openai_turn(body, state) if isinstance(body, dict) else parse_chat(body, state.slug, state.settings)

    def body(self, job: Job) -> bytes:
        if not isinstance(job, Turn):
            return completion_body(job)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(job.tokens) or None}
        if job.reasoning:
            message["reasoning"] = "".join(job.reasoning)
            message["reasoning_details"] = [
                {"type": "reasoning.text", "text": message["reasoning"], "format": "unknown", "index": 0}
            ]
        if job.tool_pieces:
            message["tool_calls"] = [_turn_tool_call(job, "".join(job.tool_pieces))]
        finish = OPENAI_FINISH.get(job.finish_reason, job.finish_reason) if job.finish_reason else None
        return orjson.dumps({
            "id": job.id, "object": "chat.completion", "created": job.created, "model": job.model,
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _turn_usage(job, job.output_tokens),
        })

    def encoder(self, job: Job):
        return OpenAITurnEncoder(job) if isinstance(job, Turn) else SseEncoder(job)


OPENAI_CHAT = OpenAITurnDialect(parse_chat)
