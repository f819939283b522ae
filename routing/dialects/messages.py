"""Anthropic's Messages API on our side of the gateway (``POST /api/v1/messages``), both directions.

``messages_parse`` validates a Messages body all the way down (a 400 naming the field) and
translates it into the internal chat request every provider adapter already speaks: ``system``
and ``role: "system"`` messages (Claude Code sends one LAST) become system messages, blocks become
content parts (``cache_control`` kept on each), ``tool_use`` blocks become ``tool_calls``,
``tool_result`` blocks become ``tool`` messages, and ``thinking``/``redacted_thinking`` blocks
become ``reasoning_details`` in the Anthropic format, so an Anthropic-dialect provider gets them
back signed, unchanged. ``thinking`` becomes ``reasoning``; ``tool_choice``, ``stop_sequences``
and the sampling fields their chat names. OpenRouter's own fields pass through as they are.

``message_body`` turns a chat completion back into a ``Message``; ``MessagesStream`` turns chat
chunks into Anthropic's SSE events (each with its ``event:`` line); ``error_body`` and
``error_event`` give OpenRouter's errors Anthropic's envelope and types.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from billing.metering import Charge, Usage
from billing.money import nanos_to_usd_number
from openrouter_site.errors import ApiError, BadRequest

from ..request_parsing import InferenceRequest, parse_chat
from ..streaming import StreamState
from ..tokens import prompt_tokens_estimate

FORMAT = "anthropic-claude-v1"  # reasoning_details written by (and given back to) Anthropic providers
ROLES = ("user", "assistant", "system")
USER_BLOCKS = ("text", "image", "document", "tool_result", "search_result")
ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
THINKING_TYPES = ("enabled", "disabled", "adaptive")
TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
# OpenRouter's fields, which mean the same here as on chat completions (validated by its parser).
PASSTHROUGH = ("models", "provider", "route", "plugins", "session_id", "user", "trace", "preset", "transforms", "usage")
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
ANTHROPIC_STOP_REASONS = frozenset(
    {"end_turn", "max_tokens", "model_context_window_exceeded", "stop_sequence", "tool_use", "pause_turn", "refusal"}
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


# --- the request --------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: Any, where: str, *, optional: bool = False, empty: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise BadRequest(f"{where} must be a {'non-empty ' if not empty else ''}string")


def _object(value: Any, where: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object")


def _cache_control(block: dict, where: str) -> dict | None:
    value = block.get("cache_control")
    _object(value, f"{where}.cache_control")
    if value is not None and not isinstance(value.get("type"), str):
        raise BadRequest(f"{where}.cache_control.type must be a string")
    return value


def _text_part(text: str, cache_control: dict | None) -> dict:
    part = {"type": "text", "text": text}
    if cache_control is not None:
        part["cache_control"] = cache_control
    return part


def _text_block(block: dict, where: str) -> dict:
    _string(block.get("text"), f"{where}.text")
    return _text_part(block["text"], _cache_control(block, where))


def _source(block: dict, where: str, kinds: tuple[str, ...]) -> dict:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in kinds:
        raise BadRequest(f"{where}.source must be an object with 'type' one of: {', '.join(kinds)}")
    kind = source["type"]
    if kind == "base64":
        _string(source.get("media_type"), f"{where}.source.media_type", empty=False)
        _string(source.get("data"), f"{where}.source.data", empty=False)
    elif kind == "url":
        _string(source.get("url"), f"{where}.source.url", empty=False)
    elif kind == "text":
        _string(source.get("data"), f"{where}.source.data")
    elif kind == "content":
        content = source.get("content")
        if not isinstance(content, str | list):
            raise BadRequest(f"{where}.source.content must be a string or an array of text blocks")
    return source


def _image_part(block: dict, where: str) -> dict:
    source = _source(block, where, ("base64", "url"))
    url = source["url"] if source["type"] == "url" else f"data:{source['media_type']};base64,{source['data']}"
    part: dict = {"type": "image_url", "image_url": {"url": url}}
    if (cache_control := _cache_control(block, where)) is not None:
        part["cache_control"] = cache_control
    return part


def _document_part(block: dict, where: str) -> dict:
    source = _source(block, where, ("base64", "url", "text", "content"))
    _string(block.get("title"), f"{where}.title", optional=True)
    cache_control = _cache_control(block, where)
    if source["type"] == "text":
        return _text_part(source["data"], cache_control)
    if source["type"] == "content":
        content = source["content"]
        texts = [content] if isinstance(content, str) else [_text_block(b, f"{where}.source.content[{i}]")["text"]
                                                            for i, b in enumerate(content) if _block(b, where)]
        return _text_part("\n".join(texts), cache_control)
    file_data = source["url"] if source["type"] == "url" else f"data:{source['media_type']};base64,{source['data']}"
    file: dict = {"file_data": file_data}
    if block.get("title"):
        file["filename"] = block["title"]
    part: dict = {"type": "file", "file": file}
    if cache_control is not None:
        part["cache_control"] = cache_control
    return part


def _search_result_part(block: dict, where: str) -> dict:
    _string(block.get("source"), f"{where}.source")
    _string(block.get("title"), f"{where}.title")
    content = block.get("content")
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be an array of text blocks")
    texts = [_text_block(b, f"{where}.content[{i}]")["text"] for i, b in enumerate(content) if _block(b, where)]
    return _text_part(f"{block['title']} ({block['source']})\n" + "\n".join(texts), _cache_control(block, where))


# The content blocks a user turn and a tool result share, each to its chat content part.
CONTENT_PARTS = {
    "text": _text_block,
    "image": _image_part,
    "document": _document_part,
    "search_result": _search_result_part,
}


def _block(block: Any, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"{where} must be an object with a string 'type'")
    return block["type"]


def _tool_result_message(block: dict, where: str) -> dict:
    _string(block.get("tool_use_id"), f"{where}.tool_use_id", empty=False)
    if not isinstance(block.get("is_error"), bool | None):
        raise BadRequest(f"{where}.is_error must be a boolean")
    cache_control = _cache_control(block, where)
    content = block.get("content")
    if content is None:
        content = ""
    if isinstance(content, str):
        parts = [_text_part(content, cache_control)] if cache_control is not None else None
    elif isinstance(content, list):
        parts = []
        for index, inner in enumerate(content):
            at = f"{where}.content[{index}]"
            kind = _block(inner, at)
            if kind in CONTENT_PARTS:
                parts.append(CONTENT_PARTS[kind](inner, at))
            elif kind == "tool_reference":
                _string(inner.get("tool_name"), f"{at}.tool_name")
                parts.append(_text_part(f"Tool: {inner['tool_name']}", None))
            else:
                raise BadRequest(f"{at}.type must be one of: text, image, document, search_result, tool_reference")
        if cache_control is not None and parts:
            parts[-1].setdefault("cache_control", cache_control)
    else:
        raise BadRequest(f"{where}.content must be a string or an array of blocks")
    if block.get("is_error") and parts is None:
        content = f"Error: {content}"
    elif block.get("is_error"):
        parts.insert(0, _text_part("Error:", None))
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": parts if parts is not None else content}


def _user_messages(content: list, where: str) -> list[dict]:
    """A user turn's blocks: its tool results first (as ``tool`` messages), then its other parts."""
    tools: list[dict] = []
    parts: list[dict] = []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = _block(block, at)
        if kind not in USER_BLOCKS:
            raise BadRequest(f"{at}.type '{kind}' is not allowed in a user message (one of: {', '.join(USER_BLOCKS)})")
        if kind in CONTENT_PARTS:
            parts.append(CONTENT_PARTS[kind](block, at))
        else:
            tools.append(_tool_result_message(block, at))
    if parts:
        tools.append({"role": "user", "content": parts})
    return tools


def _assistant_message(content: list, where: str) -> dict:
    parts: list[dict] = []
    calls: list[dict] = []
    details: list[dict] = []
    reasoning: list[str] = []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = _block(block, at)
        if kind not in ASSISTANT_BLOCKS:
            raise BadRequest(
                f"{at}.type '{kind}' is not allowed in an assistant message (one of: {', '.join(ASSISTANT_BLOCKS)})"
            )
        if kind == "text":
            parts.append(_text_block(block, at))
        elif kind == "tool_use":
            _string(block.get("id"), f"{at}.id", empty=False)
            _string(block.get("name"), f"{at}.name", empty=False)
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise BadRequest(f"{at}.input must be an object")
            _cache_control(block, at)
            calls.append(
                {"id": block["id"], "type": "function",
                 "function": {"name": block["name"], "arguments": orjson.dumps(arguments).decode()}}
            )
        elif kind == "thinking":
            _string(block.get("thinking"), f"{at}.thinking")
            _string(block.get("signature"), f"{at}.signature")
            reasoning.append(block["thinking"])
            details.append({"type": "reasoning.text", "text": block["thinking"], "signature": block["signature"],
                            "format": FORMAT, "index": len(details)})
        else:
            _string(block.get("data"), f"{at}.data")
            detail = foreign_detail(block["data"]) or {"type": "reasoning.encrypted", "data": block["data"],
                                                       "format": FORMAT}
            details.append({**detail, "index": len(details)})
    message: dict = {"role": "assistant"}
    if any("cache_control" in p for p in parts):
        message["content"] = parts
    else:
        message["content"] = "".join(p["text"] for p in parts) if parts or not calls else None
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning"] = "".join(reasoning)
    if details:
        message["reasoning_details"] = details
    return message


def _system_parts(system: Any, where: str) -> list[dict]:
    if isinstance(system, str):
        return [_text_part(system, None)] if system else []
    if not isinstance(system, list):
        raise BadRequest(f"{where} must be a string or an array of text blocks")
    parts = []
    for index, block in enumerate(system):
        at = f"{where}[{index}]"
        if _block(block, at) != "text":
            raise BadRequest(f"{at}.type must be \"text\"")
        parts.append(_text_block(block, at))
    return parts


def _chat_messages(messages: Any) -> list[dict]:
    if messages is None:
        raise BadRequest("'messages' is required: an array of at least one message")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    out: list[dict] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(f"{where}.role must be one of: {', '.join(ROLES)}")
        content = message.get("content")
        if role == "system":  # Claude Code's reminders, anywhere in the conversation (also last)
            parts = _system_parts(content, f"{where}.content")
            if parts:
                out.append({"role": "system", "content": parts})
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content must be a string or an array of content blocks")
        if role == "user":
            out.extend(_user_messages(content, where))
        else:
            out.append(_assistant_message(content, where))
    if not any(m["role"] != "system" for m in out):
        raise BadRequest("'messages' must hold at least one user or assistant message")
    return out


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array")
    out = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise BadRequest(f"{where} must be an object")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise BadRequest(f"{where}.type '{kind}' is not supported here: declare tools with 'name' and 'input_schema'")
        _string(tool.get("name"), f"{where}.name", empty=False)
        if not isinstance(tool.get("input_schema"), dict):
            raise BadRequest(f"{where}.input_schema must be an object (a JSON Schema)")
        _string(tool.get("description"), f"{where}.description", optional=True)
        if not isinstance(tool.get("defer_loading"), bool | None):
            raise BadRequest(f"{where}.defer_loading must be a boolean")
        function: dict = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        entry: dict = {"type": "function", "function": function}
        if (cache_control := _cache_control(tool, where)) is not None:
            entry["cache_control"] = cache_control
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """The chat ``tool_choice`` and ``parallel_tool_calls`` for Anthropic's ``tool_choice``."""
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICE_TYPES:
        raise BadRequest(f"'tool_choice' must be an object with 'type' one of: {', '.join(TOOL_CHOICE_TYPES)}")
    parallel = choice.get("disable_parallel_tool_use")
    if not isinstance(parallel, bool | None):
        raise BadRequest("'tool_choice.disable_parallel_tool_use' must be a boolean")
    kind = choice["type"]
    if kind == "tool":
        _string(choice.get("name"), "'tool_choice.name'", empty=False)
        chat: Any = {"type": "function", "function": {"name": choice["name"]}}
    else:
        chat = {"auto": "auto", "any": "required", "none": "none"}[kind]
    return chat, (False if parallel else None)


def _reasoning(thinking: Any, output_config: dict | None) -> dict | None:
    effort = (output_config or {}).get("effort")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
        raise BadRequest(f"'thinking' must be an object with 'type' one of: {', '.join(THINKING_TYPES)}")
    _string(thinking.get("display"), "'thinking.display'", optional=True)
    kind = thinking["type"]
    if kind == "disabled":
        return None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_int(budget) or not 1 <= budget <= 2**31 - 1:
            raise BadRequest("'thinking.budget_tokens' must be a positive integer")
        return {"max_tokens": budget}
    return {"effort": effort} if effort else {"enabled": True}


def _check_sampling(body: dict) -> None:
    for field, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= high:
            raise BadRequest(f"'{field}' must be a number between 0 and {high:g}")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise BadRequest("'top_k' must be a non-negative integer")


def chat_body(body: dict) -> dict:
    """The internal chat request for a Messages ``body`` (validated on the way)."""
    for field in ("prompt", "input", "instructions"):
        if field in body:  # a legacy completion or a Responses body sent here by mistake
            raise BadRequest(f"'{field}' is not a Messages API field; send 'messages' (and 'system')")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        if model is not None or not body.get("models"):
            raise BadRequest("'model' is required: a non-empty string")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not _is_int(max_tokens) or not 1 <= max_tokens <= 2**31 - 1):
        raise BadRequest("'max_tokens' must be a positive integer")
    stream = body.get("stream")
    if not isinstance(stream, bool | None):
        raise BadRequest("'stream' must be a boolean")
    _check_sampling(body)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise BadRequest("'stop_sequences' must be an array of strings")
    metadata = body.get("metadata")
    _object(metadata, "'metadata'")
    if metadata is not None:
        _string(metadata.get("user_id"), "'metadata.user_id'", optional=True)
    output_config = body.get("output_config")
    _object(output_config, "'output_config'")
    if output_config is not None and output_config.get("effort") not in (None, *EFFORTS):
        raise BadRequest(f"'output_config.effort' must be one of: {', '.join(EFFORTS)}")
    for field in ("context_management", "cache_control"):
        _object(body.get(field), f"'{field}'")
    for field in ("service_tier", "speed"):
        _string(body.get(field), f"'{field}'", optional=True)

    messages = _chat_messages(body.get("messages"))
    if "system" in body and body["system"] is not None:
        system = _system_parts(body["system"], "system")
        if system:
            messages.insert(0, {"role": "system", "content": system})
    out: dict[str, Any] = {"messages": messages}
    if isinstance(model, str) and model.strip():
        out["model"] = model
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if stream:
        out["stream"] = True
    for field in ("temperature", "top_p", "top_k"):
        if body.get(field) is not None:
            out[field] = body[field]
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            out["tools"] = tools
    if body.get("tool_choice") is not None:
        out["tool_choice"], parallel = _tool_choice(body["tool_choice"])
        if parallel is not None:
            out["parallel_tool_calls"] = parallel
        if "tools" not in out:
            out.pop("tool_choice")
    reasoning = _reasoning(body.get("thinking"), output_config)
    if reasoning is not None:
        out["reasoning"] = reasoning
    for field in PASSTHROUGH:
        if field in body:
            out[field] = body[field]
    return out


def messages_parse(body: dict, default_model: str) -> InferenceRequest:
    """A Messages body, validated, as the internal chat request (the gateway's planner and adapters take it)."""
    request = parse_chat(chat_body(body), default_model)
    if body.get("stop_sequences"):  # Anthropic takes more than chat's four: set after chat's check
        request.body["stop"] = body["stop_sequences"]
    request.clamp_max_tokens = True  # Claude Code always asks for 32000: a smaller upstream gets its own limit
    return request


def input_tokens_count(body: dict) -> int:
    """``count_tokens``: the prompt as a provider would count it, system, tools and earlier thinking included
    (close to a real tokenizer and rarely below it: an undercount makes Claude Code compact too late, a
    fourfold overcount, the byte bound holds use, made it compact far too early)."""
    if not isinstance(body.get("model"), str) or not body["model"].strip():
        raise BadRequest("'model' is required: a non-empty string")
    counted = {key: body[key] for key in ("messages", "system", "tools", "tool_choice", "thinking") if key in body}
    return prompt_tokens_estimate(chat_body(counted | {"model": body["model"]}))


# --- the response -------------------------------------------------------------------------------

# Another provider's opaque reasoning (a Gemini thought signature) travels to the client as a
# ``redacted_thinking`` block whose data says whose it is, so it goes back to that dialect only
# (an Anthropic provider never receives a signature it did not make).
FOREIGN = "openrouter.v1."


def foreign_data(item: dict) -> str:
    fields = {key: item.get(key) for key in ("format", "data", "id") if item.get(key) is not None}
    return FOREIGN + base64.urlsafe_b64encode(orjson.dumps(fields)).decode()


def foreign_detail(data: str) -> dict | None:
    if not data.startswith(FOREIGN):
        return None
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(data[len(FOREIGN):].encode()))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("data"), str) or fields.get("format") == FORMAT:
        return None
    detail = {"type": "reasoning.encrypted", "data": fields["data"], "format": str(fields.get("format") or "")}
    if isinstance(fields.get("id"), str):
        detail["id"] = fields["id"]
    return detail


def reasoning_block(item: dict) -> dict | None:
    """The thinking or redacted_thinking block of one ``reasoning_details`` item (None: not one)."""
    ours = item.get("format") in (None, FORMAT)
    if item.get("type") == "reasoning.encrypted" and isinstance(item.get("data"), str):
        return {"type": "redacted_thinking", "data": item["data"] if ours else foreign_data(item)}
    if item.get("type") == "reasoning.text":
        signature = item.get("signature") if ours and isinstance(item.get("signature"), str) else ""
        return {"type": "thinking", "thinking": item.get("text") or "", "signature": signature}
    return None


def stop_reason(finish: str | None, native: str | None) -> str | None:
    if native in ANTHROPIC_STOP_REASONS:
        return native
    if finish is None:
        return None
    return STOP_REASONS.get(finish, "end_turn")


def usage_block(usage: Usage, charge: Charge | None, *, is_byok: bool) -> dict:
    """Anthropic's usage (``input_tokens`` without the cache reads and writes), with OpenRouter's cost."""
    fresh = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    body = {
        "input_tokens": fresh,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": None,
        "inference_geo": None,
        "server_tool_use": None,
        "service_tier": "standard",
        "output_tokens_details": {"thinking_tokens": usage.reasoning_tokens},
    }
    if charge is not None:
        body["cost"] = nanos_to_usd_number(charge.charged)
        body["is_byok"] = is_byok
        body["cost_details"] = {
            "upstream_inference_cost": nanos_to_usd_number(charge.cost.total),
            "upstream_inference_prompt_cost": nanos_to_usd_number(charge.cost.prompt),
            "upstream_inference_completions_cost": nanos_to_usd_number(charge.cost.completion),
        }
    return body


def _tool_input(arguments: Any) -> dict:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def content_blocks(message: dict, *, strip_reasoning: bool) -> list[dict]:
    blocks: list[dict] = []
    details = message.get("reasoning_details")
    if not strip_reasoning:
        signed = False
        for item in details if isinstance(details, list) else ():
            block = reasoning_block(item) if isinstance(item, dict) else None
            if block is not None:
                signed = True
                blocks.append(block)
        if not signed and isinstance(message.get("reasoning"), str) and message["reasoning"]:
            blocks.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content, "citations": None})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                       "input": _tool_input(function.get("arguments")), "caller": {"type": "direct"}})
    return blocks


def message_body(
    *, id: str, model: str, provider: str, message: dict, finish: str | None, native: str | None, usage: Usage,
    charge: Charge, is_byok: bool, strip_reasoning: bool,
) -> dict:
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "provider": provider,
        "content": content_blocks(message, strip_reasoning=strip_reasoning),
        "stop_reason": stop_reason(finish, native),
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": usage_block(usage, charge, is_byok=is_byok),
    }


def sse(kind: str, data: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = sse("ping", {"type": "ping"})


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(exc: ApiError, request_id: str) -> dict:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type(exc.status), "message": exc.message},
        "request_id": request_id,
    }
    if exc.metadata:
        body["metadata"] = exc.metadata
    return body


def error_event(status: int, message: str) -> bytes:
    return sse("error", {"type": "error", "error": {"type": error_type(status), "message": message}})


class MessagesStream(StreamState):
    """Chat chunks as Anthropic events: ``message_start`` before the first, one content block per
    thinking run, text run and tool call (``content_block_start``/``_delta``/``_stop``); ``tail``
    closes the message with ``message_delta`` (stop reason, usage, cost) and ``message_stop``."""

    __slots__ = ("started", "block", "blocks", "tool_blocks", "signed")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.started = False
        self.block: str | None = None  # the open block's kind
        self.blocks = 0  # blocks opened so far (the next one's index)
        self.tool_blocks: dict[int, int] = {}  # tool call index -> block index
        self.signed = False  # the provider sends reasoning_details: use those, not the plain reasoning

    def event(self, fields: dict) -> bytes:
        out = []
        if not self.started:
            self.started = True
            message = {
                "id": self.generation_id, "type": "message", "role": "assistant", "model": self.model,
                "provider": self.provider, "content": [], "stop_reason": None, "stop_sequence": None,
                "stop_details": None, "container": None,
                "usage": usage_block(Usage(), None, is_byok=False),
            }
            out.append(sse("message_start", {"type": "message_start", "message": message}))
        for choice in fields.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                self._delta(delta, out)
        return b"".join(out)

    def _open(self, kind: str, block: dict, out: list[bytes]) -> None:
        self._close(out)
        self.block = kind
        out.append(sse("content_block_start", {"type": "content_block_start", "index": self.blocks, "content_block": block}))
        self.blocks += 1

    def _close(self, out: list[bytes]) -> None:
        if self.block is not None:
            out.append(sse("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1}))
            self.block = None

    def _emit(self, delta: dict, out: list[bytes], index: int | None = None) -> None:
        index = self.blocks - 1 if index is None else index
        out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))

    def _thinking(self, text: str | None, signature: str | None, out: list[bytes]) -> None:
        if self.block != "thinking":
            self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
        if text:
            self._emit({"type": "thinking_delta", "thinking": text}, out)
        if signature:
            self._emit({"type": "signature_delta", "signature": signature}, out)

    def _delta(self, delta: dict, out: list[bytes]) -> None:
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            self.signed = True
            for item in details:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "reasoning.encrypted" and isinstance(item.get("data"), str):
                    self._open("redacted_thinking", reasoning_block(item), out)
                    self._close(out)
                elif item.get("type") in ("reasoning.text", "reasoning.summary"):
                    text = item.get("text") if item.get("type") == "reasoning.text" else item.get("summary")
                    signature = item.get("signature") if item.get("format") in (None, FORMAT) else None
                    if text or signature:
                        self._thinking(text if isinstance(text, str) else None,
                                       signature if isinstance(signature, str) else None, out)
        elif not self.signed and isinstance(delta.get("reasoning"), str) and delta["reasoning"]:
            self._thinking(delta["reasoning"], None, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.block != "text":
                self._open("text", {"type": "text", "text": "", "citations": None}, out)
            self._emit({"type": "text_delta", "text": content}, out)
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            position = call.get("index") if _is_int(call.get("index")) else len(self.tool_blocks)
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            if position not in self.tool_blocks:
                block = {"type": "tool_use", "id": str(call.get("id") or f"toolu_{self.generation_id}_{position}"),
                         "name": str(function.get("name") or ""), "input": {}, "caller": {"type": "direct"}}
                self._open("tool_use", block, out)
                self.tool_blocks[position] = self.blocks - 1
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self._emit({"type": "input_json_delta", "partial_json": arguments}, out, self.tool_blocks[position])

    def tail(self, usage: Usage, charge: Charge, *, is_byok: bool, failed: bool, finish: str | None) -> bytes:
        out: list[bytes] = []
        if not self.started:
            out.append(self.event({}))
        self._close(out)
        if failed:
            out.append(error_event(502, "Provider disconnected mid-stream"))
            return b"".join(out)
        delta = {"stop_reason": stop_reason(finish, self.native_finish), "stop_sequence": None,
                 "stop_details": None, "container": None}
        out.append(sse("message_delta", {"type": "message_delta", "delta": delta,
                                         "usage": usage_block(usage, charge, is_byok=is_byok)}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        return b"".join(out)
