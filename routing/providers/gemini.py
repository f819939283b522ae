"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` in both directions.

Request: system/developer messages become ``systemInstruction``; turns become ``contents`` with
roles user/model and parts (text, inlineData, fileData, functionCall, functionResponse); tools
become ``functionDeclarations`` (their JSON Schema as ``parametersJsonSchema``); sampling, stop
and ``reasoning`` go into ``generationConfig``. Response: text parts become content, thought
parts reasoning, functionCall parts tool_calls (Gemini gives no ids, so they are made here);
thought signatures travel as ``reasoning.encrypted`` details and come back on the call they
signed. Reasoning tokens are completion tokens: completion = candidates + thoughts.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Mapping
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
    reasoning_excluded,
    requested_max_tokens,
    text_parts,
    tool_arguments,
)

FORMAT = "google-gemini-v1"
GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# --- request -----------------------------------------------------------------------------------


def _media_part(url: str, default_type: str) -> dict:
    inline = data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    mime_type = mimetypes.guess_type(url.split("?", 1)[0])[0] or default_type
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _user_parts(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_media_part(part_url(part, "image_url"), "image/jpeg"))
        elif kind in ("video_url", "input_video"):  # input_video: the legacy name, with the same video_url
            parts.append(_media_part(part_url(part, "video_url"), "video/mp4"))
        elif kind == "file":
            file = part.get("file") or {}
            if not isinstance(file.get("file_data"), str):
                raise TranslationError("file parts need 'file_data' (a URL or a data URL) for Gemini")
            parts.append(_media_part(file["file_data"], "application/pdf"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            mime_type = f"audio/{audio.get('format') or 'wav'}"
            parts.append({"inlineData": {"mimeType": mime_type, "data": audio.get("data") or ""}})
        else:
            raise TranslationError(f"'{kind}' content parts are not supported by Gemini")
    return parts


def _signatures(details: Any) -> dict[str | None, str]:
    """Thought signatures from an earlier Gemini reply, keyed by the tool call they signed."""
    signatures: dict[str | None, str] = {}
    for item in details if isinstance(details, list) else ():
        if isinstance(item, dict) and item.get("type") == "reasoning.encrypted" and item.get("format") == FORMAT:
            if isinstance(item.get("data"), str):
                signatures.setdefault(item.get("id"), item["data"])
    return signatures


def _model_parts(message: dict, names: dict[str, str]) -> list[dict]:
    parts: list[dict] = [{"text": p["text"]} for p in text_parts(message.get("content"))]
    signatures = _signatures(message.get("reasoning_details"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        name = function.get("name") or ""
        names[call.get("id")] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": tool_arguments(function.get("arguments"), name)}}
        signature = signatures.pop(call.get("id"), None) or signatures.pop(None, None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    if signatures.get(None) and parts:  # a signature that signed text rather than a call
        parts[0]["thoughtSignature"] = signatures[None]
    return parts


def _function_response(message: dict, names: dict[str, str]) -> dict:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) or message.get("name") or call_id
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(p["text"] for p in text_parts(content))
    result = json_object(text.encode()) if text.startswith("{") else None
    return {"functionResponse": {"name": name, "response": result if result is not None else {"output": text}}}


def messages_to_gemini(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(systemInstruction parts, contents)`` for OpenAI chat messages."""
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": p["text"]} for p in text_parts(message.get("content")))
            continue
        if role == "user":
            parts = _user_parts(message.get("content"))
        elif role == "assistant":
            role, parts = "model", _model_parts(message, names)
        elif role == "tool":
            role, parts = "user", [_function_response(message, names)]
        else:
            raise TranslationError(f"role '{role}' is not supported by Gemini")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _tools(tools: list) -> list[dict]:
    declarations = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        function = tool.get("function") or {}
        declaration = {"name": function.get("name"), "description": function.get("description") or ""}
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else []


def _tool_config(choice: Any) -> dict | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, dict) and str(choice.get("type", "")).startswith("openrouter:"):
        return None  # a server tool: run by OpenRouter, not the provider's business
    raise TranslationError("tool_choice must be 'auto', 'required', 'none' or a function")


def _generation_config(body: dict) -> dict:
    config: dict[str, Any] = {}
    max_tokens = requested_max_tokens(body)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    config.update((name, body[key]) for key, name in GENERATION_FIELDS if body.get(key) is not None)
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    budget = reasoning_budget(body, max_tokens or DEFAULT_MAX_TOKENS)
    if budget is not None:
        thinking: dict[str, Any] = {"thinkingBudget": budget}
        if budget and not reasoning_excluded(body):
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    return config


def build_body(body: dict) -> dict:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("Gemini needs 'messages'")
    system, contents = messages_to_gemini(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = _tools(body.get("tools") or [])
    if tools:
        out["tools"] = tools
        config = _tool_config(body.get("tool_choice"))
        if config:
            out["toolConfig"] = config
    generation = _generation_config(body)
    if generation:
        out["generationConfig"] = generation
    return out


# --- response ----------------------------------------------------------------------------------


def usage_to_openai(raw: Any) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    thoughts = count(raw.get("thoughtsTokenCount"))
    return openai_usage(
        prompt=count(raw.get("promptTokenCount")) + count(raw.get("toolUsePromptTokenCount")),
        completion=count(raw.get("candidatesTokenCount")) + thoughts,
        cached=count(raw.get("cachedContentTokenCount")),
        reasoning=thoughts,
    )


def _encrypted(index: int, signature: str, call_id: str | None) -> dict:
    return {"type": "reasoning.encrypted", "data": signature, "id": call_id, "format": FORMAT, "index": index}


def _thought(index: int, text: str) -> dict:
    return {"type": "reasoning.text", "text": text, "format": FORMAT, "index": index}


def _call(part: dict) -> dict:
    call = part["functionCall"]
    arguments = orjson.dumps(call.get("args") or {}).decode()
    return {
        "id": call.get("id") or new_call_id(),
        "type": "function",
        "function": {"name": call.get("name"), "arguments": arguments},
    }


def _first_candidate(data: dict) -> tuple[list[dict], str | None]:
    """The parts of the first candidate and its finish reason (or the prompt's block reason)."""
    candidates = data.get("candidates")
    candidate = candidates[0] if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict) else {}
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    reason = candidate.get("finishReason")
    if not candidate and isinstance(data.get("promptFeedback"), dict):
        reason = data["promptFeedback"].get("blockReason")
    return [p for p in parts or () if isinstance(p, dict)], reason


def response_to_openai(data: dict) -> dict:
    if "error" in data or not ("candidates" in data or "promptFeedback" in data):
        raise InvalidResponse("Provider returned an invalid response")
    parts, finish_reason = _first_candidate(data)
    texts: list[str] = []
    reasoning: list[str] = []
    details: list[dict] = []
    tool_calls: list[dict] = []
    for part in parts:
        call_id = None
        if "functionCall" in part:
            tool_calls.append(_call(part))
            call_id = tool_calls[-1]["id"]
        elif part.get("thought"):
            reasoning.append(part.get("text") or "")
            details.append(_thought(len(details), part.get("text") or ""))
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        if part.get("thoughtSignature"):
            details.append(_encrypted(len(details), part["thoughtSignature"], call_id))
    return chat_completion(
        id=str(data.get("responseId") or f"gen-{secrets.token_hex(12)}"),
        model=str(data.get("modelVersion") or ""),
        message=assistant_message(texts, reasoning, details, tool_calls),
        finish_reason=finish_reason,
        usage=usage_to_openai(data.get("usageMetadata")),
    )


class GeminiStream(StreamTranslator):
    """Each SSE event is a partial GenerateContentResponse; the one with a finishReason ends it."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: Any = None
        self.details = 0

    def event(self, payload: bytes, out: list[dict]) -> None:
        data = json_object(payload)
        if data is None:
            return
        error = data.get("error")
        if error is not None:
            self.fail(str((error.get("message") if isinstance(error, dict) else error) or "Provider reported an error"))
            return
        if not self.id:
            self.id = str(data.get("responseId") or f"gen-{secrets.token_hex(12)}")
            self.model = str(data.get("modelVersion") or "")
            out.append(self.chunk({"role": "assistant", "content": ""}))
        parts, finish_reason = _first_candidate(data)
        for part in parts:
            self._part(part, out)
        if data.get("usageMetadata"):
            self.usage = data["usageMetadata"]
        if finish_reason:
            out.append(self.chunk({}, finish_reason))
            out.append(self.usage_chunk(usage_to_openai(self.usage)))
            self.done = True

    def _part(self, part: dict, out: list[dict]) -> None:
        call_id = None
        if "functionCall" in part:
            call = _call(part)
            call_id = call["id"]
            out.append(self.chunk({"tool_calls": [{"index": self.tool_calls, **call}]}))
            self.tool_calls += 1
        elif part.get("thought"):
            if part.get("text"):
                detail = _thought(self.details, part["text"])
                self.details += 1
                out.append(self.chunk({"reasoning": part["text"], "reasoning_details": [detail]}))
        elif part.get("text"):
            out.append(self.chunk({"content": part["text"]}))
        if part.get("thoughtSignature"):
            detail = _encrypted(self.details, part["thoughtSignature"], call_id)
            self.details += 1
            out.append(self.chunk({"reasoning_details": [detail]}))


class GeminiAdapter(ProviderAdapter):
    dialect = "google"
    finish_reasons = {
        "STOP": "stop",
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
        "RECITATION": "content_filter",
        "BLOCKLIST": "content_filter",
        "PROHIBITED_CONTENT": "content_filter",
        "SPII": "content_filter",
        "IMAGE_SAFETY": "content_filter",
        "MALFORMED_FUNCTION_CALL": "error",
        "LANGUAGE": "stop",
        "OTHER": "stop",
        "FINISH_REASON_UNSPECIFIED": "stop",
    }

    @guarded
    def request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str, stream: bool) -> UpstreamRequest:
        model = upstream_model.removeprefix("models/")
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {
            "x-goog-api-key": api_key,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        payload = orjson.dumps(build_body(body))
        return UpstreamRequest(f"{base_url.rstrip('/')}/models/{model}:{action}", headers, payload)

    def parse_response(self, payload: bytes) -> dict:
        data = json_object(payload)
        if data is None:
            raise InvalidResponse("Provider returned an invalid response")
        return response_to_openai(data)

    def stream_translator(self) -> GeminiStream:
        return GeminiStream()

    def parse_error(
        self, status: int, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[str, float | None]:
        """Also reads the retry hint Google puts in the body (``RetryInfo.retryDelay``, e.g. "17s")."""
        message, retry = super().parse_error(status, payload, headers)
        error = (json_object(payload) or {}).get("error")
        details = error.get("details") if isinstance(error, dict) else None
        for detail in details if retry is None and isinstance(details, list) else ():
            match = RETRY_DELAY.match(str(detail.get("retryDelay") or "")) if isinstance(detail, dict) else None
            if match:
                retry = float(match.group(1))
        return message, retry
