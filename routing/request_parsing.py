"""Validate an inference request body, all the way down, and build what goes upstream.

This is the door (STYLE §17): the body is parsed once (``parse_body``: no invalid UTF-8, lone
surrogates, infinite numbers or nesting past ``MAX_JSON_DEPTH``) and every field the gateway, the
planner, the plugins or a dialect adapter reads is checked here, nested fields included —
messages and their content parts, tool calls, tools, ``tool_choice``, ``response_format``,
``reasoning``, ``plugins`` and the ``provider`` preferences (parsed into ``ProviderPreferences``).
Every rule answers with a 400 in OpenRouter's envelope and a message that names the field, so a
client's mistake is never mistaken for a provider failure further on. Unknown and legacy fields
(``transforms``, ``usage``, ``stream_options``, ``include_reasoning``…) are accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from openrouter_site.errors import BadRequest, InvalidJson
from openrouter_site.inputs import MAX_JSON_DEPTH, json_loads

from .plugins import find_plugin, plugin_enabled
from .plugins.file_parser import requested_engine
from .plugins.web_search import web_options
from .selection import DEFAULT_PREFERENCES, ProviderPreferences, preferences_parse

ROLES = {"system", "developer", "user", "assistant", "tool"}
# Fields OpenRouter understands itself; they never reach a provider.
OPENROUTER_FIELDS = (
    "models",
    "provider",
    "route",
    "transforms",
    "usage",
    "plugins",
    "session_id",
    "preset",
    "debug",
    "trace",
    "stream_options",
    "include_reasoning",
    "stop_server_tools_when",
    "cache_control",
)
NUMBER_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
    "repetition_penalty": (0.0, 2.0),
    "min_p": (0.0, 1.0),
    "top_a": (0.0, 1.0),
}
INTEGER_FIELDS = ("top_k", "seed", "top_logprobs", "n")
# Integers beyond these are no request anyone means; bounding them keeps every later sum exact and
# every counter (Redis, SQL) within a 64-bit integer.
MAX_TOKENS_LIMIT = 2**31 - 1
MAX_INTEGER = 2**53
MAX_CHOICES = 128  # ``n``: OpenAI's own bound
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema", "grammar", "python")
REASONING_EFFORTS = ("max", "xhigh", "high", "medium", "low", "minimal", "none")
URL_PARTS = {"image_url": "image_url", "video_url": "video_url", "input_video": "video_url"}  # part type -> its key
CONTENT_PART_TYPES = ("text", "image_url", "input_audio", "video_url", "input_video", "file")
SERVER_TOOL_PREFIX = "openrouter:"  # server tools (openrouter:web_search, ...): run by us, never sent to a provider


@dataclass(slots=True)
class InferenceRequest:
    """A validated request: ``body`` holds only values of the documented types (checked here)."""

    body: dict
    model: str
    stream: bool
    max_tokens: int | None
    session_id: str
    user: str
    preferences: ProviderPreferences = DEFAULT_PREFERENCES
    # Lower ``max_tokens`` to each endpoint's output limit instead of sending more than it takes
    # (the Messages API: Claude Code asks every model for 32000).
    clamp_max_tokens: bool = False


def parse_body(raw: bytes) -> dict:
    """The request's JSON object; 400 for anything else (see ``openrouter_site.inputs.json_loads``)."""
    if not raw.strip():
        raise InvalidJson("Request body is empty; expected a JSON object")
    body = json_loads(raw, max_depth=MAX_JSON_DEPTH)
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    return body


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INTEGER <= value <= MAX_INTEGER


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_common(body: dict) -> tuple[str | None, bool, int | None]:
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise BadRequest("'model' must be a non-empty string")
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise BadRequest("'models' must be an array of model ids")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean")
    max_tokens = None
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if not _is_int(value) or not 1 <= value <= MAX_TOKENS_LIMIT:
            raise BadRequest(f"'{field}' must be a positive integer (at most {MAX_TOKENS_LIMIT})")
        max_tokens = value if max_tokens is None else min(max_tokens, value)
    for field, (low, high) in NUMBER_RANGES.items():
        value = body.get(field)
        if value is None:
            continue
        if not _is_number(value):
            raise BadRequest(f"'{field}' must be a number")
        if not low <= value <= high:
            raise BadRequest(f"'{field}' must be between {low:g} and {high:g}")
    for field in INTEGER_FIELDS:
        value = body.get(field)
        if value is not None and not _is_int(value):
            raise BadRequest(f"'{field}' must be an integer")
    n = body.get("n")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise BadRequest(f"'n' must be between 1 and {MAX_CHOICES}")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop' must be a string or an array of at most 4 strings")
    for field, kind in (("tools", list), ("response_format", dict), ("provider", dict), ("reasoning", dict),
                        ("plugins", list), ("metadata", dict), ("logit_bias", dict)):
        value = body.get(field)
        if value is not None and not isinstance(value, kind):
            raise BadRequest(f"'{field}' must be {'an array' if kind is list else 'an object'}")
    for field in ("user", "session_id", "reasoning_effort", "prompt_cache_key", "service_tier", "verbosity"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{field}' must be a string")
    if isinstance(body.get("session_id"), str) and len(body["session_id"]) > 256:
        raise BadRequest("'session_id' must be at most 256 characters")
    for field in ("logprobs", "parallel_tool_calls", "include_reasoning"):
        value = body.get(field)
        if value is not None and not isinstance(value, bool):
            raise BadRequest(f"'{field}' must be a boolean")
    for field in ("stream_options", "usage", "debug", "trace", "prediction", "cache_control", "web_search_options"):
        value = body.get(field)
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f"'{field}' must be an object")
    for field in ("transforms", "modalities"):
        value = body.get(field)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise BadRequest(f"'{field}' must be an array of strings")
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and not all(_is_number(v) for v in logit_bias.values()):
        raise BadRequest("'logit_bias' must map token ids to numbers")
    _check_tools(body.get("tools"), body.get("tool_choice"))
    _check_response_format(body.get("response_format"))
    _check_reasoning(body.get("reasoning"))
    _check_plugins(body.get("plugins"))
    if model is None and models:
        model = models[0]  # only a fallback list: its first entry is the primary model
    return (model.strip() if isinstance(model, str) else None), stream, max_tokens


def _check_tools(tools: list | None, tool_choice: Any) -> None:
    for index, tool in enumerate(tools or ()):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise BadRequest(f"{where} must be an object with a string 'type'")
        if "cache_control" in tool and not isinstance(tool["cache_control"], dict | None):
            raise BadRequest(f"{where}.cache_control must be an object")
        if tool["type"] != "function":
            continue  # a server tool (openrouter:web_search, ...): never sent to a provider as a function
        function = tool.get("function")
        if not isinstance(function, dict):
            raise BadRequest(f"{where}.function must be an object")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise BadRequest(f"{where}.function.name must be a non-empty string")
        if not isinstance(function.get("description"), str | None):
            raise BadRequest(f"{where}.function.description must be a string")
        if not isinstance(function.get("parameters"), dict | None):
            raise BadRequest(f"{where}.function.parameters must be an object (a JSON Schema)")
        if not isinstance(function.get("strict"), bool | None):
            raise BadRequest(f"{where}.function.strict must be a boolean")
    if tool_choice is None or tool_choice in TOOL_CHOICES:
        return
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("type"), str):
        if tool_choice["type"].startswith(SERVER_TOOL_PREFIX):
            return  # a server tool choice
        if tool_choice["type"] != "function":
            raise BadRequest(f"'tool_choice.type' must be \"function\" or a server tool ({SERVER_TOOL_PREFIX}...)")
        function = tool_choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]:
            return
        raise BadRequest("'tool_choice.function' must be an object with a 'name'")
    raise BadRequest("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")


def _check_response_format(response_format: dict | None) -> None:
    if response_format is None:
        return
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMATS:
        raise BadRequest(f"'response_format.type' must be one of: {', '.join(RESPONSE_FORMATS)}")
    if kind != "json_schema":
        return
    schema = response_format.get("json_schema")
    if not isinstance(schema, dict):
        raise BadRequest("'response_format.json_schema' must be an object with 'name' and 'schema'")
    if not isinstance(schema.get("name"), str | None):
        raise BadRequest("'response_format.json_schema.name' must be a string")
    if not isinstance(schema.get("schema"), dict | None):
        raise BadRequest("'response_format.json_schema.schema' must be an object (a JSON Schema)")
    if not isinstance(schema.get("strict"), bool | None):
        raise BadRequest("'response_format.json_schema.strict' must be a boolean")


def _check_reasoning(reasoning: dict | None) -> None:
    if reasoning is None:
        return
    effort = reasoning.get("effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise BadRequest(f"'reasoning.effort' must be one of: {', '.join(REASONING_EFFORTS)}")
    budget = reasoning.get("max_tokens")
    if budget is not None and (not _is_int(budget) or not 0 <= budget <= MAX_TOKENS_LIMIT):
        raise BadRequest("'reasoning.max_tokens' must be a non-negative integer")
    for name in ("exclude", "enabled"):
        if not isinstance(reasoning.get(name), bool | None):
            raise BadRequest(f"'reasoning.{name}' must be a boolean")


def _check_plugins(plugins: list | None) -> None:
    """Each plugin's options, with the plugins' own validators (web, file-parser, context-compression)."""
    if plugins is None:
        return
    for plugin_id in ("web", "context-compression"):
        plugin_enabled(find_plugin(plugins, plugin_id))  # also: every entry is an object with an 'id'
    web = find_plugin(plugins, "web")
    if web is not None:
        web_options(web)
    requested_engine(plugins)


def _check_url_part(part: dict, kind: str, where: str) -> None:
    value = part.get(kind)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.{kind} must be an object with a non-empty 'url' string")
    if isinstance(value, dict) and not isinstance(value.get("detail"), str | None):
        raise BadRequest(f"{where}.{kind}.detail must be a string")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise BadRequest(f"{where} must be an object with a 'type'")
    kind = part["type"]
    if kind not in CONTENT_PART_TYPES:
        raise BadRequest(f"{where}.type must be one of: {', '.join(CONTENT_PART_TYPES)}")
    if kind == "text" and not isinstance(part.get("text"), str):
        raise BadRequest(f"{where}.text must be a string")
    if kind in URL_PARTS:
        _check_url_part(part, URL_PARTS[kind], where)
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, dict):
            raise BadRequest(f"{where}.file must be an object")
        for name in ("file_data", "filename", "file_id"):
            if not isinstance(file.get(name), str | None):
                raise BadRequest(f"{where}.file.{name} must be a string")
    elif kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise BadRequest(f"{where}.input_audio must be an object with 'data' and 'format' strings")
        if not isinstance(audio.get("format"), str | None):
            raise BadRequest(f"{where}.input_audio.format must be a string")
    if not isinstance(part.get("cache_control"), dict | None):
        raise BadRequest(f"{where}.cache_control must be an object")


def _check_tool_calls(tool_calls: Any, where: str) -> None:
    if not isinstance(tool_calls, list):
        raise BadRequest(f"{where}.tool_calls must be an array")
    for index, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{index}]"
        if not isinstance(call, dict):
            raise BadRequest(f"{at} must be an object with 'id', 'type' and 'function'")
        if not isinstance(call.get("id"), str):
            raise BadRequest(f"{at}.id must be a string")
        if call.get("type", "function") != "function":
            raise BadRequest(f"{at}.type must be \"function\"")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"{at}.function must be an object with a 'name'")
        arguments = function.get("arguments")
        if not isinstance(arguments, str | dict | None) or not _json_object_text(arguments):
            raise BadRequest(f"{at}.function.arguments must be a string holding a JSON object")


def _json_object_text(arguments: str | dict | None) -> bool:
    """Whether tool-call ``arguments`` are a JSON object (as text, as an object, or empty)."""
    if not isinstance(arguments, str) or not arguments.strip():
        return True
    try:
        return isinstance(json_loads(arguments, what="tool call arguments"), dict)
    except BadRequest:
        return False


def _check_messages(messages) -> None:
    if messages is None:
        raise BadRequest("'messages' is required: an array of at least one message")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise BadRequest(f"{where}.role must be one of {', '.join(sorted(ROLES))}")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise BadRequest(f"{where}.tool_call_id is required for tool messages")
        for name in ("name", "reasoning", "refusal"):
            if not isinstance(message.get(name), str | None):
                raise BadRequest(f"{where}.{name} must be a string")
        if not isinstance(message.get("reasoning_details"), list | None):
            raise BadRequest(f"{where}.reasoning_details must be an array")
        if message.get("tool_calls") is not None:
            if role != "assistant":
                raise BadRequest(f"{where}.tool_calls is only for assistant messages")
            _check_tool_calls(message["tool_calls"], where)
        content = message.get("content")
        if content is None:
            if role == "assistant":  # an assistant turn may carry only tool_calls
                continue
            raise BadRequest(f"{where}.content is required")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content must be a string or an array of content parts")
        for part_index, part in enumerate(content):
            _check_part(part, f"{where}.content[{part_index}]")


def parse_chat(body: dict, default_model: str) -> InferenceRequest:
    model, stream, max_tokens = _check_common(body)
    _check_messages(body.get("messages"))
    return InferenceRequest(
        body=body,
        model=model or default_model,
        stream=stream,
        max_tokens=max_tokens,
        session_id=body.get("session_id") or "",
        user=body.get("user") or "",
        preferences=preferences_parse(body.get("provider"), route=body.get("route")),
    )


def parse_completion(body: dict, default_model: str) -> InferenceRequest:
    model, stream, max_tokens = _check_common(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("'prompt' is required")
    valid = isinstance(prompt, str) or (
        isinstance(prompt, list)
        and prompt
        and (all(isinstance(p, str) for p in prompt) or all(_is_int(p) for p in prompt))
    )
    if not valid:
        raise BadRequest("'prompt' must be a string or an array of strings or token ids")
    return InferenceRequest(
        body=body,
        model=model or default_model,
        stream=stream,
        max_tokens=max_tokens,
        session_id=body.get("session_id") or "",
        user=body.get("user") or "",
        preferences=preferences_parse(body.get("provider"), route=body.get("route")),
    )


def provider_body(request: InferenceRequest) -> dict:
    """What every provider may see of the request: OpenRouter-only fields removed, ``user`` hashed."""
    body = request.body.copy()
    for field in OPENROUTER_FIELDS:
        body.pop(field, None)
    body.pop("model", None)
    if request.user:
        body["user"] = hashlib.sha256(request.user.encode()).hexdigest()[:32]
    return body


# --- embeddings --------------------------------------------------------------------------------

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own bound on one request
MAX_EMBEDDING_DIMENSIONS = 65_536
MAX_TOKEN_ID = 2**31 - 1
ENCODING_FORMATS = ("float", "base64")


def _token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(t) and 0 <= t <= MAX_TOKEN_ID for t in value)


def _check_embedding_input(value) -> int:
    """How many inputs ``input`` holds: a string, strings, token ids, or arrays of token ids (text only)."""
    if value is None:
        raise BadRequest("'input' is required")
    if isinstance(value, str):
        if not value:
            raise BadRequest("'input' must not be empty")
        return 1
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' must be a string, an array of strings, or an array of token ids (or of arrays of them)")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise BadRequest(f"'input' holds at most {MAX_EMBEDDING_INPUTS} items")
    if all(_is_int(t) for t in value):
        if not _token_ids(value):
            raise BadRequest(f"'input' token ids must be integers between 0 and {MAX_TOKEN_ID}")
        return 1
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise BadRequest(f"'input[{index}]' must not be empty")
        elif isinstance(item, list):
            if not _token_ids(item):
                raise BadRequest(f"'input[{index}]' must be a non-empty array of token ids (0 to {MAX_TOKEN_ID})")
        elif isinstance(item, dict):
            raise BadRequest(f"'input[{index}]': only text input is supported (a string or token ids)")
        else:
            raise BadRequest(f"'input[{index}]' must be a string or an array of token ids")
    return len(value)


def parse_embeddings(body: dict, default_model: str) -> InferenceRequest:
    """``POST /embeddings``: model, input, encoding_format, dimensions, input_type, user, provider, models."""
    model = body.get("model")
    if model is None:
        raise BadRequest("'model' is required (an embedding model, e.g. openai/text-embedding-3-small)")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string")
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise BadRequest("'models' must be an array of model ids")
    stream = body.get("stream")
    if stream is not None and stream is not False:
        raise BadRequest("'stream' is not supported for embeddings" if stream is True else "'stream' must be a boolean")
    _check_embedding_input(body.get("input"))
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise BadRequest("'encoding_format' must be \"float\" or \"base64\"")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS):
        raise BadRequest(f"'dimensions' must be an integer between 1 and {MAX_EMBEDDING_DIMENSIONS}")
    for field in ("input_type", "user", "session_id"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{field}' must be a string")
    if isinstance(body.get("session_id"), str) and len(body["session_id"]) > 256:
        raise BadRequest("'session_id' must be at most 256 characters")
    provider = body.get("provider")
    if provider is not None and not isinstance(provider, dict):
        raise BadRequest("'provider' must be an object")
    return InferenceRequest(
        body=body,
        model=model.strip(),
        stream=False,
        max_tokens=None,
        session_id=body.get("session_id") or "",
        user=body.get("user") or "",
        preferences=preferences_parse(provider, route=body.get("route")),
    )
