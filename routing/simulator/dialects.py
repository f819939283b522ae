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
    DONE,
    Job,
    RequestError,
    SseEncoder,
    completion_body,
    error_body,
    parse_chat,
    parse_text,
    reply_plan,
    usage,
)
from .text import forced_tool, generate_tokens, natural_length, seed_for, tool_arguments
from .tokens import content_text_parts, token_pieces

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


# --- OpenAI chat with reasoning and tool calls ------------------------------------------------------

OPENAI_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}


def _openai_thinking(body: dict[str, Any]) -> int | None:
    """The thinking budget an OpenAI chat request asks for (``reasoning``/``reasoning_effort``)."""
    reasoning, effort = body.get("reasoning"), body.get("reasoning_effort")
    if isinstance(reasoning, dict):
        if reasoning.get("enabled") is False or reasoning.get("effort") == "none":
            return None
        budget = reasoning.get("max_tokens")
        return budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else -1
    return -1 if isinstance(effort, str) and effort != "none" else None


def _openai_tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    require(tools is None or isinstance(tools, list), "'tools' must be an array", "tools")
    schemas = {}
    for index, tool in enumerate(tools or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        require(isinstance(function, dict) and isinstance(function.get("name"), str),
                f"tools[{index}].function.name is required", "tools")
        schemas[function["name"]] = function.get("parameters") or {}
    return schemas


def parse_chat_turn(body: Any, slug: str, settings: ProviderSettings) -> Job:
    """``parse_chat``, planned as a ``Turn`` when the request asks for reasoning or declares tools."""
    job = parse_chat(body, slug, settings)
    budget = _openai_thinking(body)
    tools = _openai_tools(body)
    if not budget and not tools:
        return job
    texts: list[str] = []
    control = ""
    for message in body["messages"]:
        text = "".join(content_text_parts(message.get("content")))
        texts.append(message["role"] + "\x1f" + text)
        if message["role"] == "user":
            control = text
        elif message["role"] == "tool":  # a tool's answer came after the user's last words
            control = ""
    turn = Turn(job.kind, job.model, job.stream, job.include_usage, job.prompt_tokens, (), None, job.id, job.created)
    caps = [body.get(key) for key in ("max_tokens", "max_completion_tokens")]
    caps = [cap for cap in caps if isinstance(cap, int) and not isinstance(cap, bool)]
    return plan_turn(
        turn, slug=slug, prompt_text="\x1e".join(texts), control_text=control, settings=settings,
        cap=min(caps) if caps else None, thinking_budget=budget, tools=tools,
    )


def _turn_usage(job: Turn, sent: int) -> dict[str, Any]:
    body = usage(job.prompt_tokens, sent)
    body["completion_tokens_details"]["reasoning_tokens"] = min(sent, len(job.reasoning))
    return body


def turn_completion_body(job: Turn) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(job.tokens) if job.tokens else None}
    if job.reasoning and job.show_reasoning:
        message["reasoning"] = "".join(job.reasoning)
    if job.tool_pieces:
        message["tool_calls"] = [
            {"id": job.tool_id, "type": "function",
             "function": {"name": job.tool_name, "arguments": "".join(job.tool_pieces)}}
        ]
    choice = {"index": 0, "message": message, "finish_reason": OPENAI_FINISH.get(job.finish_reason or ""),
              "logprobs": None}
    return orjson.dumps(
        {"id": job.id, "object": "chat.completion", "created": job.created, "model": job.model,
         "system_fingerprint": "fp_sim", "choices": [choice], "usage": _turn_usage(job, job.output_tokens)}
    )


class TurnSseEncoder:
    """OpenAI chunks for a ``Turn``: ``reasoning`` deltas, then ``content``, then one tool call's arguments."""

    __slots__ = ("job", "units", "position", "_base", "_edges")

    def __init__(self, job: Turn) -> None:
        self.job = job
        self.units = job.units
        self.position = 0
        self._base = {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": job.model,
                      "system_fingerprint": "fp_sim"}
        self._edges = (len(job.reasoning), len(job.reasoning) + len(job.tokens))

    def _event(self, delta: dict[str, Any] | None, finish: str | None = None, usage_obj: Any = None) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        payload: dict[str, Any] = {**self._base, "choices": choices}
        if self.job.include_usage:
            payload["usage"] = usage_obj
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def opening(self) -> bytes:
        return self._event({"role": "assistant", "content": ""})

    def content(self, unit: str) -> bytes:
        position = self.position
        self.position += 1
        if position < self._edges[0]:
            return self._event({"reasoning": unit} if self.job.show_reasoning else {"content": ""})
        if position < self._edges[1]:
            return self._event({"content": unit})
        call: dict[str, Any] = {"index": 0, "function": {"arguments": unit}}
        if position == self._edges[1]:
            call = {"index": 0, "id": self.job.tool_id, "type": "function",
                    "function": {"name": self.job.tool_name, "arguments": unit}}
        return self._event({"tool_calls": [call]})

    def closing(self, sent: int) -> bytes:
        parts = []
        if self.job.finish_reason is not None:
            parts.append(self._event({}, OPENAI_FINISH.get(self.job.finish_reason)))
        if self.job.include_usage:
            parts.append(self._event(None, usage_obj=_turn_usage(self.job, sent)))
        parts.append(DONE)
        return b"".join(parts)


class OpenAIChatDialect(OpenAIDialect):
    def body(self, job: Job) -> bytes:
        return turn_completion_body(job) if isinstance(job, Turn) else completion_body(job)

    def encoder(self, job: Job) -> Encoder:
        return TurnSseEncoder(job) if isinstance(job, Turn) else SseEncoder(job)


OPENAI_CHAT = OpenAIChatDialect(parse_chat_turn)
