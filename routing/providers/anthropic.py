"""Anthropic Messages API (``POST {base}/messages``) in both directions.

Request: system/developer messages become ``system``; user and assistant turns become content
blocks (text, image, document, tool_use, thinking); ``tool`` messages become ``tool_result``
blocks of a user turn (consecutive turns of one role are merged, as Anthropic wants them);
``reasoning`` becomes ``thinking.budget_tokens``. Response: text, thinking and tool_use blocks
become content, reasoning (+ ``reasoning_details``) and tool_calls; usage counts cache reads
and writes as prompt tokens.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import (
    DEFAULT_MAX_TOKENS,
    InvalidResponse,
    ProviderAdapter,
    StreamTranslator,
    TranslationError,
    UpstreamRequest,
    assistant_message,
    chat_completion,
    count,
    data_url,
    guarded,
    json_object,
    openai_usage,
    part_url,
    reasoning_budget,
    requested_max_tokens,
    text_parts,
    tool_arguments,
)

API_VERSION = "2023-06-01"
FORMAT = "anthropic-claude-v1"
MIN_THINKING_BUDGET = 1024
SAMPLING = ("temperature", "top_p", "top_k")  # Anthropic refuses these with thinking on


# --- request -----------------------------------------------------------------------------------


def _with_cache_control(block: dict, part: dict) -> dict:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _text_block(part: dict) -> dict:
    return _with_cache_control({"type": "text", "text": part["text"]}, part)


def _media_block(url: str, *, document: bool, title: str | None = None) -> dict:
    inline = data_url(url)
    if inline is None:
        block = {"type": "document" if document else "image", "source": {"type": "url", "url": url}}
    else:
        media_type, data = inline
        if media_type.startswith("image/"):
            block = {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        elif media_type == "application/pdf":
            block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
        else:
            raise TranslationError(f"Anthropic does not accept {media_type} content")
    if title and block["type"] == "document":
        block["title"] = title
    return block


def _content_blocks(content: Any) -> list[dict]:
    """A user (or tool) ``content``: a string, or text/image_url/file parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append(_text_block(part))
        elif kind == "image_url":
            blocks.append(_with_cache_control(_media_block(part_url(part, "image_url"), document=False), part))
        elif kind == "file":
            file = part.get("file") or {}
            if not isinstance(file.get("file_data"), str):
                raise TranslationError("file parts need 'file_data' (a URL or a data URL) for Anthropic")
            block = _media_block(file["file_data"], document=True, title=file.get("filename"))
            blocks.append(_with_cache_control(block, part))
        else:
            raise TranslationError(f"'{kind}' content parts are not supported by Anthropic")
    return blocks


def _thinking_blocks(details: Any) -> list[dict]:
    """Signed reasoning from an earlier Anthropic reply, given back as thinking blocks."""
    blocks = []
    for item in details if isinstance(details, list) else ():
        if not isinstance(item, dict) or item.get("format", FORMAT) != FORMAT:
            continue
        if item.get("type") == "reasoning.text" and item.get("signature"):
            blocks.append({"type": "thinking", "thinking": item.get("text") or "", "signature": item["signature"]})
        elif item.get("type") == "reasoning.encrypted" and item.get("data"):
            blocks.append({"type": "redacted_thinking", "data": item["data"]})
    return blocks


def _assistant_blocks(message: dict) -> list[dict]:
    blocks = _thinking_blocks(message.get("reasoning_details"))
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks.extend(_text_block(p) for p in content if p.get("type") == "text" and p.get("text"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        name = function.get("name") or ""
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": name,
                "input": tool_arguments(function.get("arguments"), name),
            }
        )
    return blocks


def _tool_result(message: dict) -> dict:
    content = message.get("content")
    result = content if isinstance(content, str) else _content_blocks(content)
    return {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": result}


def _named(message: dict) -> Any:
    content, name = message.get("content"), message.get("name")
    return f"{name}: {content}" if name and isinstance(content, str) else content


def messages_to_anthropic(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(system blocks, turns)`` for OpenAI chat messages."""
    system: list[dict] = []
    turns: list[dict] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_block(p) for p in text_parts(message.get("content")))
            continue
        if role == "user":
            blocks = _content_blocks(_named(message))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise TranslationError(f"role '{role}' is not supported by Anthropic")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":  # a prefill may not end in whitespace
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
    return system, turns


def _tools(tools: list) -> list[dict]:
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue  # server tools (openrouter:*) are not the provider's business
        function = tool.get("function") or {}
        entry = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(_with_cache_control(entry, tool))
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict | None:
    if choice is None or choice == "auto":
        result = {"type": "auto"} if choice or parallel is False else None
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif isinstance(choice, dict) and str(choice.get("type", "")).startswith("openrouter:"):
        return None  # a server tool: run by OpenRouter, not the provider's business
    else:
        raise TranslationError("tool_choice must be 'auto', 'required', 'none' or a function")
    if parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def _thinking(body: dict, max_tokens: int, explicit: bool) -> tuple[dict | None, int]:
    """The ``thinking`` block and the (possibly raised) max_tokens it needs."""
    budget = reasoning_budget(body, max_tokens)
    if not budget:
        return None, max_tokens
    if budget < 0:
        budget = max_tokens // 2
    budget = max(budget, MIN_THINKING_BUDGET)
    if budget >= max_tokens:
        if explicit:
            budget = max_tokens - 1  # the client's limit wins over the reasoning budget
            if budget < MIN_THINKING_BUDGET:
                return None, max_tokens
        else:
            max_tokens = budget + DEFAULT_MAX_TOKENS
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def build_body(body: dict, upstream_model: str, stream: bool) -> dict:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("Anthropic needs 'messages'")
    system, turns = messages_to_anthropic(messages)
    explicit = requested_max_tokens(body)
    thinking, max_tokens = _thinking(body, explicit or DEFAULT_MAX_TOKENS, explicit is not None)
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": turns}
    if system:
        out["system"] = system
    if thinking:
        out["thinking"] = thinking
    else:
        out.update((key, body[key]) for key in SAMPLING if body.get(key) is not None)
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = _tools(body.get("tools") or [])
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if stream:
        out["stream"] = True
    return out


# --- response ----------------------------------------------------------------------------------


def usage_to_openai(raw: Any) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    read = count(raw.get("cache_read_input_tokens"))
    write = count(raw.get("cache_creation_input_tokens"))
    return openai_usage(
        prompt=count(raw.get("input_tokens")) + read + write,
        completion=count(raw.get("output_tokens")),
        cached=read,
        cache_write=write,
    )


def _thinking_detail(index: int, text: str | None = None, signature: str | None = None) -> dict:
    item: dict[str, Any] = {"type": "reasoning.text", "format": FORMAT, "index": index}
    if text is not None:
        item["text"] = text
    if signature is not None:
        item["signature"] = signature
    return item


def _redacted_detail(index: int, data: Any) -> dict:
    return {"type": "reasoning.encrypted", "data": data, "format": FORMAT, "index": index}


def response_to_openai(data: dict) -> dict:
    content = data.get("content")
    if data.get("type") == "error" or not isinstance(content, list):
        raise InvalidResponse("Provider returned an invalid response")
    texts: list[str] = []
    reasoning: list[str] = []
    details: list[dict] = []
    tool_calls: list[dict] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            details.append(_thinking_detail(len(details), block.get("thinking") or "", block.get("signature")))
        elif kind == "redacted_thinking":
            details.append(_redacted_detail(len(details), block.get("data")))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    return chat_completion(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        message=assistant_message(texts, reasoning, details, tool_calls),
        finish_reason=data.get("stop_reason"),
        usage=usage_to_openai(data.get("usage")),
    )


class AnthropicStream(StreamTranslator):
    """message_start, content_block_start/delta/stop, message_delta, message_stop (+ ping, error)."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict = {}
        self.blocks: dict[int, tuple[str, int]] = {}  # block index -> (kind, tool call or detail index)
        self.details = 0

    def event(self, payload: bytes, out: list[dict]) -> None:
        data = json_object(payload)
        if data is None:
            return
        kind = data.get("type")
        if kind == "content_block_delta":
            self._delta(data.get("index"), data.get("delta") or {}, out)
        elif kind == "content_block_start":
            self._start(data.get("index"), data.get("content_block") or {}, out)
        elif kind == "message_start":
            message = data.get("message") or {}
            self.id = str(message.get("id") or "")
            self.model = str(message.get("model") or "")
            self._add_usage(message.get("usage"))
            out.append(self.chunk({"role": "assistant", "content": ""}))
        elif kind == "message_delta":
            self._add_usage(data.get("usage"))
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason:
                out.append(self.chunk({}, stop_reason))
            out.append(self.usage_chunk(usage_to_openai(self.usage)))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = data.get("error") or {}
            self.fail(str(error.get("message") or error.get("type") or "Provider reported an error mid-stream"))

    def _add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update((key, value) for key, value in usage.items() if value is not None)

    def _start(self, index: Any, block: dict, out: list[dict]) -> None:
        kind = block.get("type")
        if kind == "text":
            self.blocks[index] = ("text", 0)
            if block.get("text"):
                out.append(self.chunk({"content": block["text"]}))
        elif kind == "tool_use":
            self.blocks[index] = ("tool_use", self.tool_calls)
            call = {"index": self.tool_calls, "id": block.get("id"), "type": "function"}
            call["function"] = {"name": block.get("name"), "arguments": ""}
            self.tool_calls += 1
            out.append(self.chunk({"tool_calls": [call]}))
        elif kind == "thinking":
            self.blocks[index] = ("thinking", self.details)
            self.details += 1
        elif kind == "redacted_thinking":
            out.append(self.chunk({"reasoning_details": [_redacted_detail(self.details, block.get("data"))]}))
            self.details += 1

    def _delta(self, index: Any, delta: dict, out: list[dict]) -> None:
        kind = delta.get("type")
        position = self.blocks.get(index, ("", 0))[1]
        if kind == "text_delta":
            if delta.get("text"):
                out.append(self.chunk({"content": delta["text"]}))
        elif kind == "input_json_delta":
            if delta.get("partial_json"):
                call = {"index": position, "function": {"arguments": delta["partial_json"]}}
                out.append(self.chunk({"tool_calls": [call]}))
        elif kind == "thinking_delta":
            text = delta.get("thinking")
            if text:
                out.append(self.chunk({"reasoning": text, "reasoning_details": [_thinking_detail(position, text)]}))
        elif kind == "signature_delta":
            detail = _thinking_detail(position, signature=delta.get("signature"))
            out.append(self.chunk({"reasoning_details": [detail]}))


class AnthropicAdapter(ProviderAdapter):
    dialect = "anthropic"
    finish_reasons = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }

    @guarded
    def request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str, stream: bool) -> UpstreamRequest:
        headers = {
            "x-api-key": api_key,
            "anthropic-version": API_VERSION,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        payload = orjson.dumps(build_body(body, upstream_model, stream))
        return UpstreamRequest(f"{base_url.rstrip('/')}/messages", headers, payload)

    def parse_response(self, payload: bytes) -> dict:
        data = json_object(payload)
        if data is None:
            raise InvalidResponse("Provider returned an invalid response")
        return response_to_openai(data)

    def stream_translator(self) -> AnthropicStream:
        return AnthropicStream()
