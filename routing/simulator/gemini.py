"""Google Gemini: ``POST /p/<slug>/v1/models/<model>:generateContent`` and
``:streamGenerateContent?alt=sse``: parsing, replies, SSE events, errors.

Auth is the ``x-goog-api-key`` header (or ``?key=``). ``generationConfig.thinkingConfig`` with a
non-zero ``thinkingBudget`` makes the model think (``thoughtsTokenCount``); the thoughts are in
the reply only with ``includeThoughts``. ``[sim:tool=NAME]`` in the last user turn makes a
``functionCall`` of a declared function (signed with a ``thoughtSignature`` when it thought).
Streams are ``data: <GenerateContentResponse>`` events with CRLF line ends and no terminator;
the last one has the ``finishReason`` and the usage.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .config import ProviderSettings
from .dialects import FAILURE_MESSAGES, Dialect, Turn, answer_with_schema, plan_turn, require, sse_template
from .protocol import CHAT, RequestError, new_id
from .tokens import MESSAGE_OVERHEAD, REPLY_OVERHEAD, count_tokens

STATUSES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
_SENTINEL = "\u2063sim-token\u2063"
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def error_body(status: int, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return orjson.dumps({"error": error})


def _frame(data: bytes) -> bytes:
    return b"data: " + data + b"\r\n\r\n"


# --- request -----------------------------------------------------------------------------------


def _part_text(part: dict[str, Any]) -> str:
    if isinstance(part.get("text"), str):
        return part["text"]
    for key, field in (("functionCall", "args"), ("functionResponse", "response")):
        if isinstance(part.get(key), dict):
            return str(part[key].get("name") or "") + orjson.dumps(part[key].get(field) or {}).decode()
    return ""


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    require(isinstance(content, dict), f"{where}: must be a Content object")
    parts = content.get("parts")
    require(isinstance(parts, list) and bool(parts), f"{where}.parts: must be a non-empty list")
    require(
        all(isinstance(part, dict) and part for part in parts), f"{where}.parts: each part must be a non-empty object"
    )
    return parts


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    tools = body.get("tools")
    if tools is None:
        return schemas
    require(isinstance(tools, list), "tools: must be a list")
    for tool in tools:
        for declaration in (tool.get("functionDeclarations") or ()) if isinstance(tool, dict) else ():
            require(
                isinstance(declaration, dict) and isinstance(declaration.get("name"), str),
                "functionDeclarations: name is required",
            )
            schemas[declaration["name"]] = (
                declaration.get("parametersJsonSchema") or declaration.get("parameters") or {}
            )
    return schemas


def _thinking(config: dict[str, Any]) -> tuple[int | None, bool]:
    thinking = config.get("thinkingConfig")
    if thinking is None:
        return None, False
    require(isinstance(thinking, dict), "generationConfig.thinkingConfig: must be an object")
    budget = thinking.get("thinkingBudget", -1)
    require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= -1,
        "thinkingConfig.thinkingBudget: must be an integer >= -1",
    )
    return budget, thinking.get("includeThoughts") is True


def parse(body: Any, request: Any, state: Any) -> Turn:
    model, _, method = request.match_info["target"].rpartition(":")
    if method not in ("generateContent", "streamGenerateContent") or not model:
        raise RequestError(f"Method not found: {request.match_info['target']}", status=404)
    stream = method == "streamGenerateContent"
    require(not stream or request.query.get("alt") == "sse", "the simulator streams only with ?alt=sse")
    require(isinstance(body, dict), "request body must be a JSON object")
    contents = body.get("contents")
    require(isinstance(contents, list) and bool(contents), "contents is not specified", "contents")
    config = body.get("generationConfig") or {}
    require(isinstance(config, dict), "generationConfig: must be an object")
    cap = config.get("maxOutputTokens")
    require(
        cap is None or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1),
        "maxOutputTokens: must be a positive integer",
    )
    budget, show = _thinking(config)
    tokens = REPLY_OVERHEAD
    texts = []
    if body.get("systemInstruction") is not None:
        text = "".join(map(_part_text, _parts(body["systemInstruction"], "systemInstruction")))
        tokens += MESSAGE_OVERHEAD + count_tokens(text)
        texts.append("system\x1f" + text)
    last_user = ""
    for index, content in enumerate(contents):
        parts = _parts(content, f"contents[{index}]")
        role = content.get("role") or "user"
        require(role in ("user", "model"), "Please use a valid role: user, model.")
        text = "".join(map(_part_text, parts))
        tokens += MESSAGE_OVERHEAD + count_tokens(text)
        texts.append(role + "\x1f" + text)
        if role == "user":
            last_user = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    schemas = _tools(body)
    tokens += sum(count_tokens(name + orjson.dumps(schema).decode()) for name, schema in schemas.items())
    job = Turn(CHAT, model, stream, True, tokens, (), None, new_id("sim-"), int(time.time()))
    job.show_reasoning = show
    plan_turn(
        job,
        slug=state.slug,
        prompt_text="\x1e".join(texts),
        control_text=last_user,
        settings=state.settings,
        cap=cap,
        thinking_budget=budget,
        tools=schemas,
    )
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if isinstance(schema, dict):
        answer_with_schema(job, schema, slug=state.slug, prompt_text="\x1e".join(texts), cap=cap)
    return job


# --- reply ---------------------------------------------------------------------------------------


def _usage(job: Turn, thoughts: int, candidates: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": job.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": job.prompt_tokens + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": job.prompt_tokens}],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _call_part(job: Turn) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": job.tool_name, "args": job.tool_input}}
    if job.reasoning:
        part["thoughtSignature"] = job.signature
    return part


def _response(job: Turn, parts: list[dict[str, Any]], finish: bool, usage: dict[str, Any] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish and job.finish_reason:
        candidate["finishReason"] = FINISH_REASONS[job.finish_reason]
    data: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        data["usageMetadata"] = usage
    data["modelVersion"] = job.model
    data["responseId"] = job.id
    return data


def response_body(job: Turn) -> bytes:
    parts: list[dict[str, Any]] = []
    if job.reasoning and job.show_reasoning:
        parts.append({"text": "".join(job.reasoning), "thought": True})
    if job.tokens:
        parts.append({"text": "".join(job.tokens)})
    if job.tool_pieces:
        parts.append(_call_part(job))
    usage = _usage(job, len(job.reasoning), len(job.tokens) + len(job.tool_pieces))
    return orjson.dumps(_response(job, parts, True, usage))


class StreamEncoder:
    """One event per thought (when shown) and text token; the function call is one event once all
    its pieces are out; the closing event carries the finish reason and the usage."""

    __slots__ = ("job", "units", "position", "thoughts", "_edges", "_thought", "_text")

    def __init__(self, job: Turn) -> None:
        self.job = job
        self.units = job.units
        self.position = 0
        self.thoughts = 0
        reasoning = len(job.reasoning)
        self._edges = (reasoning, reasoning + len(job.tokens), len(self.units))
        self._thought = sse_template(
            _response(job, [{"text": _SENTINEL, "thought": True}], False, None), _SENTINEL, _frame
        )
        self._text = sse_template(_response(job, [{"text": _SENTINEL}], False, None), _SENTINEL, _frame)

    def opening(self) -> bytes:
        return b""

    def content(self, unit: str) -> bytes:
        position = self.position
        self.position += 1
        if position < self._edges[0]:
            self.thoughts += 1
            if not self.job.show_reasoning:
                return b""
            head, tail = self._thought
        elif position < self._edges[1]:
            head, tail = self._text
        else:
            if self.position < self._edges[2]:
                return b""
            return _frame(orjson.dumps(_response(self.job, [_call_part(self.job)], False, None)))
        return head + orjson.dumps(unit) + tail

    def closing(self, sent: int) -> bytes:
        usage = _usage(self.job, self.thoughts, sent - self.thoughts)
        return _frame(orjson.dumps(_response(self.job, [{"text": ""}], True, usage)))


class GeminiDialect(Dialect):
    auth_error = (403, error_body(403, NO_KEY))

    def authorized(self, request: Any) -> bool:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        return bool(key) and not key.isspace()

    def parse(self, body: Any, request: Any, state: Any) -> Turn:
        return parse(body, request, state)

    def body(self, job: Any) -> bytes:
        return response_body(job)

    def encoder(self, job: Any) -> StreamEncoder:
        return StreamEncoder(job)

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        return error_body(status, message)

    def failure(self, mode: str, settings: ProviderSettings) -> tuple[int, bytes, dict[str, str]]:
        status, message = FAILURE_MESSAGES[mode]
        details = None
        if mode == "429":  # Google says when to retry in the body, not in a header
            details = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{settings.retry_after:g}s"}
            ]
        return status, error_body(status, message, details), {}


GEMINI = GeminiDialect()
