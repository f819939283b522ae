"""Anthropic Messages API (``POST /p/<slug>/v1/messages``): parsing, replies, SSE events, errors.

Auth is the ``x-api-key`` header. Prompt tokens are counted with the simulator's tokenizer
over tools, system and message blocks; blocks marked ``cache_control`` are cache breakpoints:
the first request writes the prefix (``cache_creation_input_tokens``), a later one with the
same prefix reads it (``cache_read_input_tokens``). ``thinking`` adds a signed thinking block;
``[sim:tool=NAME]`` in the last user turn adds a ``tool_use`` block.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from .config import ProviderSettings
from .dialects import FAILURE_MESSAGES, Dialect, Turn, plan_turn, require, sse_template
from .protocol import CHAT, new_id
from .tokens import MESSAGE_OVERHEAD, REPLY_OVERHEAD, count_tokens

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}
DELTAS = {
    "thinking": ("thinking_delta", "thinking"),
    "text": ("text_delta", "text"),
    "tool": ("input_json_delta", "partial_json"),
}
_SENTINEL = "\u2063sim-token\u2063"
CACHE_LIMIT = 100_000  # remembered prefixes per provider before the cache is flushed


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}})


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# --- request -----------------------------------------------------------------------------------


def _block_text(block: Any) -> str:
    """The text a block puts in the prompt (text, tool_use input, tool_result content)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return block.get("text") or ""
    if kind == "tool_use":
        return (block.get("name") or "") + orjson.dumps(block.get("input") or {}).decode()
    if kind == "tool_result":
        content = block.get("content")
        return content if isinstance(content, str) else "".join(_block_text(b) for b in content or ())
    return ""


class PromptCounter:
    """Counts prompt tokens in order and remembers the prefix hash at every block boundary."""

    def __init__(self) -> None:
        self.tokens = REPLY_OVERHEAD
        self.digest = hashlib.blake2b(digest_size=16)
        self.boundaries: list[tuple[bytes, int]] = []
        self.breakpoints: list[int] = []  # indexes into boundaries

    def add(self, block: Any, text: str) -> None:
        self.tokens += count_tokens(text)
        plain = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
        self.digest.update(orjson.dumps(plain))
        self.boundaries.append((self.digest.digest(), self.tokens))
        if isinstance(block, dict) and block.get("cache_control"):
            self.breakpoints.append(len(self.boundaries) - 1)

    def turn(self, role: str) -> None:
        self.tokens += MESSAGE_OVERHEAD
        self.digest.update(role.encode())

    def cache(self, seen: set[bytes]) -> tuple[int, int]:
        """(read, written) tokens: the longest known prefix is read, the rest up to the last breakpoint written."""
        if not self.breakpoints:
            return 0, 0
        last = self.breakpoints[-1]
        read = next((tokens for digest, tokens in reversed(self.boundaries[: last + 1]) if digest in seen), 0)
        if len(seen) > CACHE_LIMIT:
            seen.clear()
        seen.update(self.boundaries[index][0] for index in self.breakpoints)
        return read, self.boundaries[last][1] - read


def _blocks(content: Any, where: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    require(
        isinstance(content, list) and bool(content), f"{where}.content: must be a string or a non-empty list of blocks"
    )
    for index, block in enumerate(content):
        require(
            isinstance(block, dict) and isinstance(block.get("type"), str),
            f"{where}.content.{index}: a block needs a type",
        )
        require(
            block["type"] != "text" or bool(block.get("text")),
            f"{where}.content.{index}: text blocks must be non-empty",
        )
    return content


def _thinking_budget(body: dict[str, Any], max_tokens: int) -> int | None:
    thinking = body.get("thinking")
    if thinking is None or (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        return None
    require(
        isinstance(thinking, dict) and thinking.get("type") == "enabled",
        "thinking: type must be 'enabled' or 'disabled'",
    )
    budget = thinking.get("budget_tokens")
    require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1024,
        "thinking.budget_tokens: must be >= 1024",
    )
    require(budget < max_tokens, "`max_tokens` must be greater than `thinking.budget_tokens`")
    require(
        body.get("temperature") is None and body.get("top_k") is None,
        "temperature and top_k may not be set with thinking",
    )
    return budget


def _tools(body: dict[str, Any], counter: PromptCounter) -> dict[str, Any]:
    tools = body.get("tools")
    if tools is None:
        return {}
    require(isinstance(tools, list), "tools: must be a list")
    schemas = {}
    for index, tool in enumerate(tools):
        require(isinstance(tool, dict) and isinstance(tool.get("name"), str), f"tools.{index}.name: Field required")
        require(isinstance(tool.get("input_schema"), dict), f"tools.{index}.input_schema: Field required")
        schemas[tool["name"]] = tool["input_schema"]
        counter.add(tool, tool["name"] + orjson.dumps(tool["input_schema"]).decode())
    return schemas


def parse(body: Any, request: Any, state: Any) -> Turn:
    require(isinstance(body, dict), "request body must be a JSON object")
    model = body.get("model")
    require(isinstance(model, str) and bool(model), "model: Field required", "model")
    max_tokens = body.get("max_tokens")
    require(
        isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1,
        "max_tokens: Field required",
        "max_tokens",
    )
    messages = body.get("messages")
    require(isinstance(messages, list) and bool(messages), "messages: Field required", "messages")
    stream = body.get("stream", False)
    require(isinstance(stream, bool), "stream: must be a boolean", "stream")
    budget = _thinking_budget(body, max_tokens)
    counter = PromptCounter()
    tools = _tools(body, counter)
    texts = []
    system = body.get("system")
    if system is not None:
        for block in _blocks(system, "system"):
            counter.add(block, _block_text(block))
            texts.append("system\x1f" + _block_text(block))
    last_user = ""
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        require(role in ("user", "assistant"), f"messages.{index}.role: Input should be 'user' or 'assistant'")
        counter.turn(role)
        blocks = _blocks(message.get("content"), f"messages.{index}")
        text = ""
        for block in blocks:
            counter.add(block, _block_text(block))
            text += _block_text(block)
        texts.append(role + "\x1f" + text)
        if role == "user":
            last_user = "".join(b.get("text") or "" for b in blocks if b.get("type") == "text")
    read, written = counter.cache(state.prompt_cache)
    job = Turn(CHAT, model, stream, True, counter.tokens, (), None, new_id("msg_"), int(time.time()))
    job.cache_read, job.cache_write = read, written
    return plan_turn(
        job,
        slug=state.slug,
        prompt_text="\x1e".join(texts),
        control_text=last_user,
        settings=state.settings,
        cap=max_tokens,
        thinking_budget=budget,
        tools=tools,
    )


# --- reply ---------------------------------------------------------------------------------------


def _usage(job: Turn, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": job.prompt_tokens - job.cache_read - job.cache_write,
        "cache_creation_input_tokens": job.cache_write,
        "cache_read_input_tokens": job.cache_read,
        "output_tokens": output_tokens,
    }


def _stop_reason(job: Turn) -> str | None:
    return STOP_REASONS.get(job.finish_reason) if job.finish_reason else None


def message_body(job: Turn) -> bytes:
    content: list[dict[str, Any]] = []
    if job.reasoning:
        content.append({"type": "thinking", "thinking": "".join(job.reasoning), "signature": job.signature})
    if job.tokens:
        content.append({"type": "text", "text": "".join(job.tokens)})
    if job.tool_pieces:
        content.append({"type": "tool_use", "id": job.tool_id, "name": job.tool_name, "input": job.tool_input})
    return orjson.dumps(
        {
            "id": job.id,
            "type": "message",
            "role": "assistant",
            "model": job.model,
            "content": content,
            "stop_reason": _stop_reason(job),
            "stop_sequence": None,
            "usage": _usage(job, job.output_tokens),
        }
    )


class MessagesEncoder:
    """The real event sequence: message_start, ping, one content block per kind (start, deltas,
    stop; thinking closes with its signature), message_delta with the stop reason and usage,
    message_stop. Each unit is one delta event."""

    __slots__ = ("job", "units", "position", "index", "kind", "_head", "_tail", "_edges")

    def __init__(self, job: Turn) -> None:
        self.job = job
        self.units = job.units
        self.position = 0
        self.index = -1
        self.kind = ""
        self._head = self._tail = b""
        thinking = len(job.reasoning)
        self._edges = (thinking, thinking + len(job.tokens))

    def opening(self) -> bytes:
        message = {
            "id": self.job.id,
            "type": "message",
            "role": "assistant",
            "model": self.job.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self.job, 1),
        }
        return event("message_start", {"type": "message_start", "message": message}) + event("ping", {"type": "ping"})

    def content(self, unit: str) -> bytes:
        position = self.position
        self.position += 1
        kind = "thinking" if position < self._edges[0] else "text" if position < self._edges[1] else "tool"
        prefix = self._switch(kind) if kind != self.kind else b""
        return prefix + self._head + orjson.dumps(unit) + self._tail

    def _close(self) -> bytes:
        if not self.kind:
            return b""
        out = b""
        if self.kind == "thinking":
            delta = {"type": "signature_delta", "signature": self.job.signature}
            out = event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})
        return out + event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _switch(self, kind: str) -> bytes:
        out = self._close()
        self.kind = kind
        self.index += 1
        if kind == "thinking":
            block: dict[str, Any] = {"type": "thinking", "thinking": ""}
        elif kind == "text":
            block = {"type": "text", "text": ""}
        else:
            block = {"type": "tool_use", "id": self.job.tool_id, "name": self.job.tool_name, "input": {}}
        out += event(
            "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}
        )
        delta_type, field = DELTAS[kind]
        template = {"type": "content_block_delta", "index": self.index, "delta": {"type": delta_type, field: _SENTINEL}}
        self._head, self._tail = sse_template(
            template, _SENTINEL, lambda data: b"event: content_block_delta\ndata: " + data + b"\n\n"
        )
        return out

    def closing(self, sent: int) -> bytes:
        delta = {"type": "message_delta", "delta": {"stop_reason": _stop_reason(self.job), "stop_sequence": None}}
        delta["usage"] = {"output_tokens": sent}
        out = self._close() + event("message_delta", delta) + event("message_stop", {"type": "message_stop"})
        self.kind = ""
        return out


class AnthropicDialect(Dialect):
    auth_error = (401, error_body(401, "x-api-key header is required"))

    def authorized(self, request: Any) -> bool:
        key = request.headers.get("x-api-key")
        return bool(key) and not key.isspace()

    def parse(self, body: Any, request: Any, state: Any) -> Turn:
        return parse(body, request, state)

    def body(self, job: Any) -> bytes:
        return message_body(job)

    def encoder(self, job: Any) -> MessagesEncoder:
        return MessagesEncoder(job)

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        return error_body(status, message)

    def failure(self, mode: str, settings: ProviderSettings) -> tuple[int, bytes, dict[str, str]]:
        status, message = FAILURE_MESSAGES[mode]
        headers = {"retry-after": f"{settings.retry_after:g}"} if mode == "429" else {}
        return status, error_body(status, message), headers


ANTHROPIC = AnthropicDialect()
