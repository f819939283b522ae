"""The OpenAI chat dialect: the identity adapter (what the gateway has always sent upstream)."""

from __future__ import annotations

import orjson

from .base import InvalidResponse, ProviderAdapter, StreamTranslator, UpstreamRequest, guarded, json_object


class OpenAIStream(StreamTranslator):
    """Chunks pass through as they are; ``[DONE]`` ends the reply, an ``error`` event fails it."""

    def event(self, payload: bytes, out: list[dict]) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        chunk = json_object(payload)
        if chunk is None:
            return
        error = chunk.get("error")
        if error is not None and not chunk.get("choices"):
            message = error.get("message") if isinstance(error, dict) else error
            self.fail(str(message or "Provider reported an error mid-stream"))
            return
        if not self.id and isinstance(chunk.get("id"), str):
            self.id = chunk["id"]
            self.model = chunk.get("model") or ""
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
                    self.tool_calls += sum(
                        1 for call in delta["tool_calls"] if isinstance(call, dict) and call.get("id")
                    )
        out.append(chunk)


class OpenAIAdapter(ProviderAdapter):
    dialect = "openai"

    @guarded
    def request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str, stream: bool) -> UpstreamRequest:
        out = dict(body)
        out["model"] = upstream_model
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        else:
            out.pop("stream", None)
            out.pop("stream_options", None)
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        return UpstreamRequest(f"{base_url.rstrip('/')}/chat/completions", headers, orjson.dumps(out))

    def parse_response(self, payload: bytes) -> dict:
        data = json_object(payload)
        if data is None or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise InvalidResponse("Provider returned an invalid response")
        return data

    def stream_translator(self) -> OpenAIStream:
        return OpenAIStream()

    @guarded
    def embeddings_request(self, *, body: dict, upstream_model: str, base_url: str, api_key: str) -> UpstreamRequest:
        out = dict(body)
        out["model"] = upstream_model
        out.pop("stream", None)
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Accept": "application/json"}
        return UpstreamRequest(f"{base_url.rstrip('/')}/embeddings", headers, orjson.dumps(out))

    def parse_embeddings(self, payload: bytes) -> dict:
        data = json_object(payload)
        items = data.get("data") if data is not None else None
        if not isinstance(items, list) or not items:
            raise InvalidResponse("Provider returned an invalid embeddings response")
        for index, item in enumerate(items):
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not (isinstance(vector, str) or (isinstance(vector, list) and vector)):
                raise InvalidResponse("Provider returned an invalid embeddings response")
            item.setdefault("index", index)
            item["object"] = "embedding"
        return data
