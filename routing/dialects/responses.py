"""OpenAI Responses (``POST /api/v1/responses``), stateless as OpenRouter serves it, on the chat core.

A Responses body is validated here, all the way down, and translated into the chat request the
planner, the attempts and every provider dialect already take (``request_to_chat``); the chat
answer is translated back in ``responses_answer`` (``#OpenResponsesResult`` and the stream's
events). Nothing is stored, so
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
from dataclasses import dataclass, field
from typing import Any

import orjson

from openrouter_site.errors import BadRequest
from openrouter_site.inputs import json_loads

from ..request_parsing import REASONING_EFFORTS, InferenceRequest, parse_chat

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
