"""OpenAI Responses: a chat answer as ``#OpenResponsesResult`` (``chat_to_response``) and a chat stream,
chunk by chunk, as the spec's events (``ResponsesStream``), with a terminal ``response.completed``,
``response.incomplete`` or ``response.failed`` always. The request side is ``responses``.

Output items, in order: ``reasoning`` (its ``encrypted_content`` carries the reasoning_details, so
thinking signatures come back next turn), ``message``, then one ``function_call`` or
``custom_tool_call`` per tool call (as the tool's own type asked).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from openrouter_site.errors import ApiError

from ..streaming import StreamState
from .responses import CUSTOM_INPUT, ResponsesRequest, encrypted_content


def item_id(prefix: str, response_id: str, index: int) -> str:
    return f"{prefix}_{response_id.removeprefix('gen-')}_{index}"


def usage_to_responses(usage: dict) -> dict:
    """Chat usage (``routing.shapes.usage_body``) in the Responses shape, cost included."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    cost_details = usage.get("cost_details") or {}
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens", 0),
            "cache_write_tokens": prompt_details.get("cache_write_tokens", 0),
        },
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens", 0)},
        "total_tokens": usage.get("total_tokens", 0),
        "cost": usage.get("cost"),
        "is_byok": usage.get("is_byok", False),
        "cost_details": {
            "upstream_inference_cost": cost_details.get("upstream_inference_cost"),
            "upstream_inference_input_cost": cost_details.get("upstream_inference_prompt_cost"),
            "upstream_inference_output_cost": cost_details.get("upstream_inference_completions_cost"),
        },
    }


def status_for(finish: str | None) -> tuple[str, dict | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(
    request: ResponsesRequest, *, response_id: str, model: str, created_at: int, status: str, output: list,
    usage: dict | None, incomplete: dict | None = None, error: dict | None = None, provider: str | None = None,
) -> dict:
    body = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": int(time.time()) if status in ("completed", "incomplete", "failed") else None,
        "status": status,
        "model": model,
        "output": output,
        "error": error,
        "incomplete_details": incomplete,
        **request.echo,
        "service_tier": "default",
    }
    if usage is not None:  # the spec has no null usage: absent until it is known
        body["usage"] = usage
    if provider is not None:
        body["provider"] = provider
    if error is not None:
        body["error_type"] = ERROR_TYPES.get(error.get("code"), "server")
    return body


def tool_call_item(request: ResponsesRequest, response_id: str, index: int, call_id: str, name: str, arguments: str,
                   *, status: str = "completed") -> dict:
    """A model's tool call as the item its tool's type calls for (function_call or custom_tool_call)."""
    if name in request.tools.custom:
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            parsed = None
        text = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
        return {
            "type": "custom_tool_call", "id": item_id("ctc", response_id, index), "call_id": call_id, "name": name,
            "input": text if isinstance(text, str) else arguments, "status": status,
        }
    item = {
        "type": "function_call", "id": item_id("fc", response_id, index), "call_id": call_id, "name": name,
        "arguments": arguments, "status": status,
    }
    if name in request.tools.namespace:
        item["namespace"] = request.tools.namespace[name]
    return item


def reasoning_item(response_id: str, index: int, text: str, details: list) -> dict:
    item: dict[str, Any] = {
        "type": "reasoning", "id": item_id("rs", response_id, index),
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if details:
        item["encrypted_content"] = encrypted_content(details)
    return item


def message_item(response_id: str, index: int, text: str, *, refusal: str | None = None,
                 status: str = "completed", annotations: list | None = None) -> dict:
    content: list[dict] = []
    if text or refusal is None:
        content.append({"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id("msg", response_id, index), "role": "assistant", "status": status,
            "content": content}


def chat_to_response(request: ResponsesRequest, chat: dict) -> dict:
    """A whole chat answer (the JSON responder's body) as ``#OpenResponsesResult``."""
    response_id = chat["id"]
    choice = chat["choices"][0]
    message = choice.get("message") or {}
    output: list[dict] = []
    reasoning = message.get("reasoning") if isinstance(message.get("reasoning"), str) else ""
    details = message.get("reasoning_details") if isinstance(message.get("reasoning_details"), list) else []
    if reasoning or details:
        output.append(reasoning_item(response_id, len(output), reasoning or "", details))
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    if text or refusal or not calls:
        annotations = message.get("annotations") if isinstance(message.get("annotations"), list) else None
        output.append(message_item(response_id, len(output), text, refusal=refusal, annotations=annotations))
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()
        output.append(tool_call_item(
            request, response_id, len(output), str(call.get("id") or item_id("call", response_id, len(output))),
            str(function.get("name") or ""), arguments or "",
        ))
    status, incomplete = status_for(choice.get("finish_reason"))
    return response_object(
        request, response_id=response_id, model=chat["model"], created_at=chat["created"], status=status,
        output=output, usage=usage_to_responses(chat["usage"]), incomplete=incomplete, provider=chat.get("provider"),
    )


# --- errors ---------------------------------------------------------------------------------------


# ``error.code`` of a failed response -> OpenRouter's canonical ``error_type``. Codex maps the first three
# codes (context window, rate limit, quota); the spec's enum for ``code`` lacks two of them, Codex wins.
ERROR_TYPES = {
    "context_length_exceeded": "context_length_exceeded",
    "rate_limit_exceeded": "rate_limit_exceeded",
    "insufficient_quota": "payment_required",
    "invalid_prompt": "invalid_request",
    "server_error": "provider_unavailable",
}


def error_code(exc: ApiError) -> str:
    """The ``response.failed`` error code Codex maps (context window, rate limit, quota) or a generic one."""
    error_type = (exc.metadata or {}).get("error_type") if isinstance(exc.metadata, dict) else None
    message = exc.message.lower()
    if "context" in message and ("length" in message or "window" in message or "too long" in message):
        return "context_length_exceeded"
    if exc.status == 429 or error_type == "rate_limit_exceeded":
        return "rate_limit_exceeded"
    if exc.status == 402:
        return "insufficient_quota"
    if 400 <= exc.status < 500:
        return "invalid_prompt"
    return "server_error"


def error_object(exc: ApiError) -> dict:
    return {"code": error_code(exc), "message": exc.message}


# --- the stream -----------------------------------------------------------------------------------


def sse(kind: str, data: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def merge_details(merged: list[dict], pieces: list) -> None:
    """Streamed reasoning_details fragments into whole details (text joined, signature/data kept)."""
    for piece in pieces:
        if not isinstance(piece, dict):
            continue
        key = (piece.get("type"), piece.get("index", 0))
        last = merged[-1] if merged else None
        if last is not None and (last.get("type"), last.get("index", 0)) == key:
            for name in ("text", "summary", "data"):
                if isinstance(piece.get(name), str):
                    last[name] = (last.get(name) or "") + piece[name]
            for name, value in piece.items():
                if name not in ("text", "summary", "data") and value is not None:
                    last[name] = value
        else:
            merged.append(dict(piece))


class ResponsesStream(StreamState):
    """The chat stream's chunks as Responses events.

    The SSE responder hands this state each chat chunk (``event``), then its tail: an ``error``
    chunk when the provider broke off, and always the usage chunk, which becomes the terminal
    ``response.completed`` / ``response.incomplete`` / ``response.failed``. Items are opened and
    closed in order: reasoning, then the message, then each tool call.
    """

    __slots__ = ("request", "created_at", "sequence", "output", "open_kind", "open_item", "message_text", "reasoning",
                 "details", "calls", "failure", "finished")

    def __init__(self, *, request: ResponsesRequest, **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.created_at = int(time.time())
        self.sequence = 0
        self.output: list[dict] = []  # closed items
        self.open_kind: str | None = None
        self.open_item: dict | None = None
        self.message_text: list[str] = []
        self.reasoning: list[str] = []
        self.details: list[dict] = []
        self.calls: dict[int, dict] = {}  # chat tool_call index -> {item, arguments, output_index}
        self.failure: dict | None = None
        self.finished = False

    def _emit(self, kind: str, data: dict) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return sse(kind, data)

    def _response(self, status: str, *, usage=None, incomplete=None, error=None) -> dict:
        return response_object(
            self.request, response_id=self.generation_id, model=self.model, created_at=self.created_at,
            status=status, output=list(self.output), usage=usage, incomplete=incomplete, error=error,
            provider=self.provider,
        )

    # opening and closing items

    def _close(self) -> list[bytes]:
        kind, item, out = self.open_kind, self.open_item, []
        if kind is None:
            return out
        index = len(self.output)
        if kind == "reasoning":
            text = "".join(self.reasoning)
            done = reasoning_item(self.generation_id, index, text, self.details)
            done["id"] = item["id"]
            if text:
                part = {"type": "summary_text", "text": text}
                base = {"item_id": item["id"], "output_index": index, "summary_index": 0}
                out.append(self._emit("response.reasoning_summary_text.done", {**base, "text": text}))
                out.append(self._emit("response.reasoning_summary_part.done", {**base, "part": part}))
            self.reasoning, self.details = [], []
        elif kind == "message":
            text = "".join(self.message_text)
            done = message_item(self.generation_id, index, text)
            done["id"] = item["id"]
            part = done["content"][0]
            base = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._emit("response.output_text.done", {**base, "text": text, "logprobs": []}))
            out.append(self._emit("response.content_part.done", {**base, "part": part}))
            self.message_text = []
        else:  # a tool call
            call = item
            done = tool_call_item(self.request, self.generation_id, index, call["call_id"], call["name"],
                                  call["arguments"])
            done["id"] = call["id"]
            if done["type"] == "function_call":
                out.append(self._emit("response.function_call_arguments.done", {
                    "item_id": call["id"], "output_index": index, "name": call["name"], "arguments": call["arguments"],
                }))
            else:
                out.append(self._emit("response.custom_tool_call_input.done", {
                    "item_id": call["id"], "output_index": index, "input": done["input"],
                }))
        out.append(self._emit("response.output_item.done", {"output_index": index, "item": done}))
        self.output.append(done)
        self.open_kind, self.open_item = None, None
        return out

    def _open(self, kind: str, item: dict) -> list[bytes]:
        out = self._close()
        self.open_kind, self.open_item = kind, item
        index = len(self.output)
        out.append(self._emit("response.output_item.added", {"output_index": index, "item": item}))
        if kind == "reasoning":
            pass  # the summary part opens with its first text
        elif kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._emit("response.content_part.added", {
                "item_id": item["id"], "output_index": index, "content_index": 0, "part": part,
            }))
        return out

    # the chat chunks

    def event(self, fields: dict) -> bytes:
        out: list[bytes] = []
        if self.sequence == 0:
            response = self._response("in_progress")
            out.append(self._emit("response.created", {"response": response}))
            out.append(self._emit("response.in_progress", {"response": response}))
        if "error" in fields:  # the provider broke off: the usage chunk follows and ends the stream
            error = fields["error"] if isinstance(fields["error"], dict) else {}
            self.failure = {"code": "server_error", "message": str(error.get("message") or "Provider error")}
            return b"".join(out)
        if "usage" in fields and not fields.get("choices"):
            out.extend(self._finish(fields["usage"]))
            return b"".join(out)
        for choice in fields.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
        return b"".join(out)

    def _delta(self, delta: dict) -> list[bytes]:
        out: list[bytes] = []
        reasoning = delta.get("reasoning")
        details = delta.get("reasoning_details")
        if (isinstance(reasoning, str) and reasoning) or (isinstance(details, list) and details):
            if self.open_kind != "reasoning":
                index = len(self.output) + (1 if self.open_kind else 0)
                out.extend(self._open("reasoning", {
                    "type": "reasoning", "id": item_id("rs", self.generation_id, index), "summary": [],
                }))
            item_ref = self.open_item["id"]
            index = len(self.output)
            if isinstance(details, list):
                merge_details(self.details, details)
            if isinstance(reasoning, str) and reasoning:
                base = {"item_id": item_ref, "output_index": index, "summary_index": 0}
                if not self.reasoning:
                    out.append(self._emit("response.reasoning_summary_part.added", {
                        **base, "part": {"type": "summary_text", "text": ""},
                    }))
                self.reasoning.append(reasoning)
                out.append(self._emit("response.reasoning_summary_text.delta", {**base, "delta": reasoning}))
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.open_kind != "message":
                index = len(self.output) + (1 if self.open_kind else 0)
                out.extend(self._open("message", {
                    "type": "message", "id": item_id("msg", self.generation_id, index), "role": "assistant",
                    "status": "in_progress", "content": [],
                }))
            self.message_text.append(content)
            out.append(self._emit("response.output_text.delta", {
                "item_id": self.open_item["id"], "output_index": len(self.output), "content_index": 0,
                "delta": content, "logprobs": [],
            }))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            out.extend(self._tool_delta(call))
        return out

    def _tool_delta(self, call: dict) -> list[bytes]:
        out: list[bytes] = []
        position = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        current = self.calls.get(position)
        if current is None or current is not self.open_item:
            if current is not None:  # a call resumed after another item: keep feeding it where it is
                return out
            index = len(self.output) + (1 if self.open_kind else 0)
            name = str(function.get("name") or "")
            call_id = str(call.get("id") or item_id("call", self.generation_id, index))
            custom = name in self.request.tools.custom
            current = {
                "type": "custom_tool_call" if custom else "function_call",
                "id": item_id("ctc" if custom else "fc", self.generation_id, index),
                "call_id": call_id, "name": name, "status": "in_progress",
            }
            current["input" if custom else "arguments"] = ""
            if not custom and name in self.request.tools.namespace:
                current["namespace"] = self.request.tools.namespace[name]
            added = self._open("call", current)
            current["arguments"] = ""  # what the stream sends, kept until the call closes
            self.calls[position] = current
            out.extend(added)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            current["arguments"] += arguments
            if current["type"] == "function_call":
                out.append(self._emit("response.function_call_arguments.delta", {
                    "item_id": current["id"], "output_index": len(self.output), "delta": arguments,
                }))
        return out

    def _finish(self, usage: dict) -> list[bytes]:
        if self.finished:
            return []
        self.finished = True
        out = self._close()
        usage_out = usage_to_responses(usage)
        if self.failure is not None:
            response = self._response("failed", usage=usage_out, error=self.failure)
            out.append(self._emit("response.failed", {"response": response}))
            return out
        status, incomplete = status_for(self.finish)
        response = self._response(status, usage=usage_out, incomplete=incomplete)
        out.append(self._emit(f"response.{status}", {"response": response}))
        return out

    def failed(self, exc: ApiError) -> bytes:
        """The terminal event for an error after the stream started (the call's in-band error)."""
        if self.first_token_at is None:  # nothing went out yet (the events so far were held back)
            self.sequence, self.output, self.open_kind, self.open_item = 0, [], None, None
        out = [] if self.finished or self.open_kind is None else self._close()
        self.finished = True
        if self.sequence == 0:
            out.append(self._emit("response.created", {"response": self._response("in_progress")}))
        response = self._response("failed", error=error_object(exc))
        out.append(self._emit("response.failed", {"response": response}))
        return b"".join(out)
