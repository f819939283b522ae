"""OpenAI Responses (``POST /api/v1/responses``), stateless as OpenRouter serves it, on the chat core.

A Responses body is validated here, all the way down, and translated into the chat request the
planner, the attempts and every provider dialect already take (``request_to_chat``); the chat
answer is translated back: a whole one into ``#OpenResponsesResult`` (``chat_to_response``), a
stream chunk by chunk into the spec's events (``ResponsesStream``). Nothing is stored, so
``store: true``, ``previous_response_id``, ``conversation``, ``background`` and stored prompts
are 400s; the whole history comes in ``input`` every time.

The mapping, both ways:
  instructions / system / developer items   -> system / developer messages
  message items (input_text, input_image,   -> user / assistant messages with chat content parts
    input_file, output_text, refusal)
  function_call / custom_tool_call          -> the assistant turn's tool_calls (a custom tool is a
                                               function taking {"input": string})
  function_call_output / custom_*_output    -> tool messages
  reasoning items                           -> the assistant turn's reasoning_details, carried in
                                               ``encrypted_content`` (thinking signatures survive)
  tools: function, custom, namespace        -> function tools (a namespace is flattened); hosted
                                               tools (web_search, file_search, ...) are dropped
                                               (nobody here runs them), ``openrouter:*`` kept
  text.format json_schema                   -> response_format
  max_output_tokens, reasoning{effort}      -> max_tokens, reasoning
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from openrouter_site.errors import ApiError, BadRequest
from openrouter_site.inputs import json_loads

from ..request_parsing import REASONING_EFFORTS, InferenceRequest, parse_chat
from ..streaming import StreamState

# --- the request ----------------------------------------------------------------------------------

ROLES = ("user", "assistant", "system", "developer")
ITEM_TYPES = (
    "message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output", "reasoning",
)
INCLUDES = (
    "reasoning.encrypted_content", "file_search_call.results", "message.input_image.image_url",
    "computer_call_output.output.image_url", "code_interpreter_call.outputs", "message.output_text.logprobs",
    "web_search_call.action.sources", "web_search_call.results",
)
# Tools a provider runs for OpenAI itself; no provider behind a chat request runs them: dropped.
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26", "file_search",
    "computer_use_preview", "computer_use", "code_interpreter", "mcp", "image_generation", "local_shell",
    "codex_local_shell", "shell", "apply_patch", "tool_search",
})
SUMMARIES = ("auto", "concise", "detailed")
VERBOSITIES = ("low", "medium", "high")
SERVICE_TIERS = ("auto", "default", "fast", "flex", "priority", "scale")
TRUNCATIONS = ("auto", "disabled")
TEXT_FORMATS = ("text", "json_object", "json_schema")
# Responses fields that are chat fields of the same name and type (checked again by the chat parser).
SAME_FIELDS = (
    "temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty", "parallel_tool_calls",
    "prompt_cache_key", "models", "provider", "route", "plugins", "session_id", "user", "transforms", "debug",
    "trace", "stop_server_tools_when", "cache_control", "modalities", "image_config", "seed", "stream",
)
CUSTOM_INPUT = "input"  # the one argument of a custom (freeform) tool seen as a function
ENCRYPTED_PREFIX = "or1:"  # our encrypted_content: base64url of the reasoning_details it stands for
FOREIGN_FORMAT = "openai-responses-v1"  # someone else's encrypted_content, passed on as it came


@dataclass(slots=True)
class ToolKinds:
    """What the client's tools were, so that calls are answered as the item types it expects."""

    custom: set[str] = field(default_factory=set)
    namespace: dict[str, str] = field(default_factory=dict)  # function name -> its namespace


@dataclass(slots=True)
class ResponsesRequest(InferenceRequest):
    """A validated Responses request: ``body`` is its chat translation; ``echo`` what the answer repeats."""

    echo: dict = field(default_factory=dict)
    tools: ToolKinds = field(default_factory=ToolKinds)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value, where: str, *, required: bool = False, empty: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (not empty and not value):
        raise BadRequest(f"{where} must be a {'non-empty ' if not empty else ''}string")
    return value


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object")
    return value


def _check_statelessness(body: dict) -> None:
    if body.get("store") not in (None, False):
        if body["store"] is True:
            raise BadRequest(
                "'store': true is not supported: this Responses API is stateless and stores nothing; "
                "send 'store': false (or leave it out) and the whole conversation in 'input'"
            )
        raise BadRequest("'store' must be a boolean (false: this Responses API is stateless)")
    if body.get("previous_response_id") is not None:
        raise BadRequest(
            "'previous_response_id' is not supported: this Responses API is stateless and stores no responses; "
            "send the whole conversation in 'input' instead"
        )
    if body.get("conversation") is not None:
        raise BadRequest("'conversation' is not supported: this Responses API is stateless; send the history in 'input'")
    if body.get("background") not in (None, False):
        if body["background"] is True:
            raise BadRequest("'background': true is not supported: this Responses API is stateless")
        raise BadRequest("'background' must be a boolean")
    if body.get("prompt") is not None:
        raise BadRequest("'prompt' (a stored prompt template) is not supported: send 'instructions' and 'input'")


# input parts -> chat content parts


def _part(part, where: str, role: str) -> dict:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise BadRequest(f"{where} must be an object with a string 'type'")
    kind = part["type"]
    assistant = role == "assistant"
    if kind in ("input_text", "output_text", "text"):
        if kind == "output_text" and not assistant:
            raise BadRequest(f"{where}: 'output_text' parts belong to assistant messages; use 'input_text'")
        return {"type": "text", "text": _string(part.get("text"), f"{where}.text", required=True)}
    if kind == "refusal":
        if not assistant:
            raise BadRequest(f"{where}: 'refusal' parts belong to assistant messages")
        return {"type": "text", "text": _string(part.get("refusal"), f"{where}.refusal", required=True)}
    if assistant:
        raise BadRequest(f"{where}: assistant messages hold only 'output_text' and 'refusal' parts, not '{kind}'")
    if kind == "input_image":
        url = _string(part.get("image_url"), f"{where}.image_url")
        detail = part.get("detail")
        if detail is not None and detail not in ("auto", "low", "high", "original"):
            raise BadRequest(f"{where}.detail must be one of: auto, low, high, original")
        if not url:
            if part.get("file_id") is not None:
                raise BadRequest(f"{where}.file_id is not supported (no stored files): send 'image_url' (a URL or data URL)")
            raise BadRequest(f"{where}.image_url must be a non-empty string (a URL or data URL)")
        image = {"url": url}
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        for name in ("file_data", "file_url", "filename", "file_id"):
            _string(part.get(name), f"{where}.{name}")
        data = part.get("file_data") or part.get("file_url")
        if not data:
            if part.get("file_id") is not None:
                raise BadRequest(f"{where}.file_id is not supported (no stored files): send 'file_data' or 'file_url'")
            raise BadRequest(f"{where} needs 'file_data' (a data URL) or 'file_url'")
        file = {"file_data": data}
        if part.get("filename"):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    if kind == "input_audio":
        audio = _object(part.get("input_audio"), f"{where}.input_audio")
        _string(audio.get("data"), f"{where}.input_audio.data", required=True)
        _string(audio.get("format"), f"{where}.input_audio.format")
        return {"type": "input_audio", "input_audio": audio}
    raise BadRequest(
        f"{where}.type must be one of: input_text, input_image, input_file, input_audio (and for assistant messages "
        "output_text, refusal)"
    )


def _content(content, where: str, role: str) -> str | list:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or an array of content parts")
    return [_part(part, f"{where}[{index}]", role) for index, part in enumerate(content)]


def _output(value, where: str) -> str | list:
    """A tool call's output: a string, or parts (text, images, files) given back as they came."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a string or an array of content parts")
    parts = [_part(part, f"{where}[{index}]", "tool") for index, part in enumerate(value)]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _arguments(value, where: str) -> str:
    arguments = _string(value, where, required=True)
    if arguments.strip():
        try:
            parsed = json_loads(arguments, what="function call arguments")
        except BadRequest:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadRequest(f"{where} must be a string holding a JSON object")
    return arguments


def encrypted_content(details: list) -> str:
    """Our ``encrypted_content`` for a reasoning item: its reasoning_details, to be given back as they are."""
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(orjson.dumps(details)).decode()


def _reasoning_details(item: dict, where: str) -> tuple[list, str]:
    """The reasoning_details (and the readable text) a reasoning input item stands for."""
    summary = item.get("summary")
    if summary is None:
        summary = []
    if not isinstance(summary, list):
        raise BadRequest(f"{where}.summary must be an array")
    texts = []
    for index, part in enumerate(summary):
        part = _object(part, f"{where}.summary[{index}]")
        if part.get("type") != "summary_text":
            raise BadRequest(f"{where}.summary[{index}].type must be \"summary_text\"")
        texts.append(_string(part.get("text"), f"{where}.summary[{index}].text", required=True))
    content = item.get("content")
    if content is not None:
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content must be an array")
        for index, part in enumerate(content):
            part = _object(part, f"{where}.content[{index}]")
            if part.get("type") != "reasoning_text":
                raise BadRequest(f"{where}.content[{index}].type must be \"reasoning_text\"")
            _string(part.get("text"), f"{where}.content[{index}].text", required=True)
    encrypted = _string(item.get("encrypted_content"), f"{where}.encrypted_content")
    text = "".join(texts)
    if encrypted and encrypted.startswith(ENCRYPTED_PREFIX):
        try:
            details = orjson.loads(base64.urlsafe_b64decode(encrypted[len(ENCRYPTED_PREFIX):].encode()))
        except (ValueError, orjson.JSONDecodeError):
            details = None
        if isinstance(details, list) and all(isinstance(d, dict) for d in details):
            return details, text
        raise BadRequest(f"{where}.encrypted_content is not one this API gave out")
    if encrypted:
        return [{"type": "reasoning.encrypted", "data": encrypted, "format": FOREIGN_FORMAT, "index": 0}], text
    if text:
        return [{"type": "reasoning.summary", "summary": text, "format": FOREIGN_FORMAT, "index": 0}], text
    return [], text


class _Turns:
    """Builds the chat messages; consecutive assistant-side items make one assistant message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.assistant: dict | None = None
        self.calls: set[str] = set()

    def _open(self) -> dict:
        if self.assistant is None:
            self.assistant = {"role": "assistant", "content": None}
            self.messages.append(self.assistant)
        return self.assistant

    def close(self) -> None:
        self.assistant = None

    def add(self, message: dict) -> None:
        self.close()
        self.messages.append(message)

    def assistant_text(self, content: str | list) -> None:
        message = self._open()
        text = content if isinstance(content, str) else "".join(part["text"] for part in content)
        message["content"] = (message["content"] or "") + text

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._open().setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
        self.calls.add(call_id)

    def reasoning(self, details: list, text: str) -> None:
        message = self._open()
        if details:
            message.setdefault("reasoning_details", []).extend(details)
        if text:
            message["reasoning"] = (message.get("reasoning") or "") + text


def _items(items, turns: _Turns) -> None:
    if not isinstance(items, list):
        raise BadRequest("'input' must be a string or an array of input items")
    if not items:
        raise BadRequest("'input' must not be empty")
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in ITEM_TYPES:
            if kind == "item_reference":
                raise BadRequest(f"{where}: 'item_reference' is not supported (nothing is stored); send the item itself")
            raise BadRequest(f"{where}.type must be one of: {', '.join(ITEM_TYPES)}")
        _string(item.get("id"), f"{where}.id")
        _string(item.get("status"), f"{where}.status")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise BadRequest(f"{where}.role must be one of: {', '.join(ROLES)}")
            if "content" not in item:
                raise BadRequest(f"{where}.content is required")
            content = _content(item["content"], f"{where}.content", role)
            if role == "assistant":
                turns.assistant_text(content)
            else:
                turns.add({"role": role, "content": content})
        elif kind in ("function_call", "custom_tool_call"):
            call_id = _string(item.get("call_id"), f"{where}.call_id", required=True, empty=False)
            name = _string(item.get("name"), f"{where}.name", required=True, empty=False)
            _string(item.get("namespace"), f"{where}.namespace")
            if kind == "function_call":
                arguments = _arguments(item.get("arguments"), f"{where}.arguments")
            else:
                text = _string(item.get("input"), f"{where}.input", required=True)
                arguments = orjson.dumps({CUSTOM_INPUT: text}).decode()
            turns.tool_call(call_id, name, arguments)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item.get("call_id"), f"{where}.call_id", required=True, empty=False)
            if call_id not in turns.calls:
                raise BadRequest(f"{where}: no function_call with call_id '{call_id}' comes before this output")
            if "output" not in item:
                raise BadRequest(f"{where}.output is required")
            turns.add({"role": "tool", "tool_call_id": call_id, "content": _output(item["output"], f"{where}.output")})
        else:  # reasoning
            details, text = _reasoning_details(item, where)
            turns.reasoning(details, text)


# tools


def _function_tool(tool: dict, where: str, kinds: ToolKinds, namespace: str | None) -> dict:
    name = _string(tool.get("name"), f"{where}.name", required=True, empty=False)
    description = _string(tool.get("description"), f"{where}.description")
    if tool["type"] == "custom":
        fmt = tool.get("format")
        hint = "The raw input for this tool (free text)."
        if fmt is not None:
            fmt = _object(fmt, f"{where}.format")
            if fmt.get("type") not in ("text", "grammar"):
                raise BadRequest(f"{where}.format.type must be \"text\" or \"grammar\"")
            if fmt["type"] == "grammar":
                if fmt.get("syntax") not in ("lark", "regex"):
                    raise BadRequest(f"{where}.format.syntax must be \"lark\" or \"regex\"")
                definition = _string(fmt.get("definition"), f"{where}.format.definition", required=True)
                hint = f"The raw input for this tool; it must match this {fmt['syntax']} grammar:\n{definition}"
        kinds.custom.add(name)
        parameters = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": hint}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        }
        strict = None
    else:
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise BadRequest(f"{where}.parameters must be an object (a JSON Schema)")
        strict = tool.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise BadRequest(f"{where}.strict must be a boolean")
        if tool.get("defer_loading") is not None and not isinstance(tool["defer_loading"], bool):
            raise BadRequest(f"{where}.defer_loading must be a boolean")
    if namespace is not None:
        kinds.namespace[name] = namespace
    function: dict[str, Any] = {"name": name, "parameters": parameters or {"type": "object", "properties": {}}}
    if description:
        function["description"] = description
    if strict is not None:
        function["strict"] = strict
    return {"type": "function", "function": function}


def _tools(tools, kinds: ToolKinds) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array")
    out = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise BadRequest(f"{where} must be an object with a string 'type'")
        kind = tool["type"]
        if kind in ("function", "custom"):
            out.append(_function_tool(tool, where, kinds, None))
        elif kind == "namespace":
            name = _string(tool.get("name"), f"{where}.name", required=True, empty=False)
            _string(tool.get("description"), f"{where}.description")
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise BadRequest(f"{where}.tools must be an array")
            for position, sub in enumerate(inner):
                at = f"{where}.tools[{position}]"
                if not isinstance(sub, dict) or sub.get("type") not in ("function", "custom"):
                    raise BadRequest(f"{at} must be a function or custom tool")
                out.append(_function_tool(sub, at, kinds, name))
        elif kind.startswith("openrouter:"):
            out.append(tool)  # a server tool: the chat core runs it
        elif kind in HOSTED_TOOLS:
            continue  # nobody behind a chat request runs it
        else:
            raise BadRequest(f"{where}.type '{kind}' is not a tool type this API knows")
    return out


def _tool_choice(choice, kinds: ToolKinds):
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and isinstance(choice.get("type"), str):
        kind = choice["type"]
        if kind in ("function", "custom"):
            name = _string(choice.get("name"), "'tool_choice.name'", required=True, empty=False)
            return {"type": "function", "function": {"name": name}}
        if kind == "allowed_tools":
            mode = choice.get("mode")
            if mode not in ("auto", "required"):
                raise BadRequest("'tool_choice.mode' must be \"auto\" or \"required\"")
            if not isinstance(choice.get("tools"), list):
                raise BadRequest("'tool_choice.tools' must be an array")
            return mode
        if kind in HOSTED_TOOLS or kind.startswith("openrouter:"):
            return "auto"
    raise BadRequest(
        "'tool_choice' must be \"none\", \"auto\", \"required\", {\"type\": \"function\", \"name\": ...} or "
        "{\"type\": \"allowed_tools\", ...}"
    )


def _text_format(text) -> tuple[dict | None, str | None]:
    if text is None:
        return None, None
    text = _object(text, "'text'")
    verbosity = text.get("verbosity")
    if verbosity is not None and verbosity not in VERBOSITIES:
        raise BadRequest(f"'text.verbosity' must be one of: {', '.join(VERBOSITIES)}")
    fmt = text.get("format")
    if fmt is None:
        return None, verbosity
    fmt = _object(fmt, "'text.format'")
    kind = fmt.get("type")
    if kind not in TEXT_FORMATS:
        raise BadRequest(f"'text.format.type' must be one of: {', '.join(TEXT_FORMATS)}")
    if kind == "text":
        return None, verbosity
    if kind == "json_object":
        return {"type": "json_object"}, verbosity
    name = _string(fmt.get("name"), "'text.format.name'", required=True, empty=False)
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("'text.format.schema' must be an object (a JSON Schema)")
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    description = _string(fmt.get("description"), "'text.format.description'")
    if description:
        json_schema["description"] = description
    strict = fmt.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise BadRequest("'text.format.strict' must be a boolean")
        json_schema["strict"] = strict
    return {"type": "json_schema", "json_schema": json_schema}, verbosity


def _reasoning(reasoning) -> dict | None:
    if reasoning is None:
        return None
    reasoning = _object(reasoning, "'reasoning'")
    out: dict[str, Any] = {}
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise BadRequest(f"'reasoning.effort' must be one of: {', '.join(REASONING_EFFORTS)}")
        out["effort"] = effort
    for name in ("summary", "generate_summary"):
        value = reasoning.get(name)
        if value is not None and value not in SUMMARIES:
            raise BadRequest(f"'reasoning.{name}' must be one of: {', '.join(SUMMARIES)}")
    budget = reasoning.get("max_tokens")
    if budget is not None:
        if not _is_int(budget) or budget < 0:
            raise BadRequest("'reasoning.max_tokens' must be a non-negative integer")
        out["max_tokens"] = budget
    for name in ("enabled", "exclude"):
        value = reasoning.get(name)
        if value is not None:
            if not isinstance(value, bool):
                raise BadRequest(f"'reasoning.{name}' must be a boolean")
            out[name] = value
    return out


def _check_fields(body: dict) -> None:
    for name in ("instructions", "prompt_cache_key", "safety_identifier", "user", "session_id", "model"):
        _string(body.get(name), f"'{name}'")
    for name in ("max_output_tokens", "max_tool_calls", "top_logprobs", "top_k"):
        value = body.get(name)
        if value is not None and (not _is_int(value) or value < (1 if name == "max_output_tokens" else 0)):
            raise BadRequest(f"'{name}' must be a {'positive' if name == 'max_output_tokens' else 'non-negative'} integer")
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(isinstance(entry, str) for entry in include):
            raise BadRequest("'include' must be an array of strings")
        unknown = [entry for entry in include if entry not in INCLUDES]
        if unknown:
            raise BadRequest(f"'include' has unknown entries: {', '.join(unknown)} (known: {', '.join(INCLUDES)})")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values())
    ):
        raise BadRequest("'metadata' must be an object of string values")
    for name, allowed in (("service_tier", SERVICE_TIERS), ("truncation", TRUNCATIONS)):
        value = body.get(name)
        if value is not None and value not in allowed:
            raise BadRequest(f"'{name}' must be one of: {', '.join(allowed)}")
    for name in ("client_metadata", "prompt_cache_options"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f"'{name}' must be an object")
    if "input" not in body or body["input"] is None:
        raise BadRequest("'input' is required: a string or an array of input items")


def request_to_chat(body: dict) -> tuple[dict, ToolKinds]:
    """The chat request a Responses body stands for (400 on anything malformed, nested fields included)."""
    if "messages" in body and "input" not in body:
        raise BadRequest("This is the Responses API: send 'input' (a string or input items), not 'messages'")
    _check_statelessness(body)
    _check_fields(body)
    kinds = ToolKinds()
    turns = _Turns()
    if body.get("instructions"):
        turns.add({"role": "system", "content": body["instructions"]})
    if isinstance(body["input"], str):
        turns.add({"role": "user", "content": body["input"]})
    else:
        _items(body["input"], turns)
    chat: dict[str, Any] = {name: body[name] for name in SAME_FIELDS if body.get(name) is not None}
    if body.get("model") is not None:
        chat["model"] = body["model"]
    chat["messages"] = turns.messages
    tools = _tools(body.get("tools"), kinds)
    if tools:
        chat["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), kinds)
    if choice is not None and tools:
        chat["tool_choice"] = choice
    response_format, verbosity = _text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if verbosity is not None:
        chat["verbosity"] = verbosity
    reasoning = _reasoning(body.get("reasoning"))
    if reasoning is not None:
        chat["reasoning"] = reasoning
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs"):
        chat["logprobs"] = True
        chat["top_logprobs"] = body["top_logprobs"]
    if body.get("service_tier") is not None:
        chat["service_tier"] = "priority" if body["service_tier"] == "fast" else body["service_tier"]
    if body.get("metadata"):
        chat["metadata"] = body["metadata"]
    return chat, kinds


def _echo(body: dict) -> dict:
    """What ``#OpenResponsesResult`` repeats of the request."""
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None
    return {
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or None,
        "tools": [  # as sent; a function tool always with its (required) parameters, null when left out
            {**tool, "parameters": tool.get("parameters")} if tool.get("type") == "function" else tool
            for tool in body.get("tools") or ()
        ],
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls") if body.get("parallel_tool_calls") is not None else True,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "presence_penalty": body.get("presence_penalty"),
        "frequency_penalty": body.get("frequency_penalty"),
        "max_output_tokens": body.get("max_output_tokens"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning else None,
        "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
        "store": False,
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
        "prompt_cache_key": body.get("prompt_cache_key"),
    }


def parse_responses(body: dict, default_model: str) -> ResponsesRequest:
    """Validate a Responses body and translate it; the chat parser then checks the translation too."""
    chat, kinds = request_to_chat(body)
    request = parse_chat(chat, default_model)
    return ResponsesRequest(
        body=request.body, model=request.model, stream=request.stream, max_tokens=request.max_tokens,
        session_id=request.session_id, user=request.user, preferences=request.preferences,
        echo=_echo(body), tools=kinds,
    )


# --- the answer -----------------------------------------------------------------------------------


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
