"""Validate an inference request body and build what goes upstream.

Every rule here answers with a 400 in OpenRouter's envelope and a message that
names the field. Unknown and legacy fields (``transforms``, ``usage``,
``stream_options``, ``route``, ``include_reasoning``…) are accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from openrouter_site.errors import BadRequest, InvalidJson

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


@dataclass(slots=True)
class InferenceRequest:
    body: dict
    model: str
    stream: bool
    max_tokens: int | None
    session_id: str
    user: str


def parse_body(raw: bytes) -> dict:
    if not raw.strip():
        raise InvalidJson("Request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"Invalid JSON in request body: {exc.args[0] if exc.args else 'malformed'}") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    return body


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not _is_int(value) or value < 1:
            raise BadRequest(f"'{field}' must be a positive integer")
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
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop' must be a string or an array of at most 4 strings")
    for field, kind in (("tools", list), ("response_format", dict), ("provider", dict), ("reasoning", dict),
                        ("plugins", list), ("metadata", dict), ("logit_bias", dict)):
        value = body.get(field)
        if value is not None and not isinstance(value, kind):
            raise BadRequest(f"'{field}' must be {'an array' if kind is list else 'an object'}")
    for field in ("user", "session_id"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{field}' must be a string")
    if isinstance(body.get("session_id"), str) and len(body["session_id"]) > 256:
        raise BadRequest("'session_id' must be at most 256 characters")
    if model is None and models:
        model = models[0]  # only a fallback list: its first entry is the primary model
    return (model.strip() if isinstance(model, str) else None), stream, max_tokens


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
        if role not in ROLES:
            raise BadRequest(f"{where}.role must be one of {', '.join(sorted(ROLES))}")
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
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise BadRequest(f"{where}.content[{part_index}] must be an object with a 'type'")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}.content[{part_index}].text must be a string")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise BadRequest(f"{where}.tool_call_id is required for tool messages")


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
