"""Rewrites a provider's reply, as OpenAI chunks, into OpenRouter's SSE events."""

from __future__ import annotations

import time

import orjson

from billing.metering import Usage

from .shapes import usage_from_provider


class StreamState:
    """What a stream said so far, and its events in our shape.

    Events before the first token (the role-only chunk) are held back, so that a
    provider that fails before producing anything can still be replaced by the next.
    """

    __slots__ = (
        "generation_id", "model", "provider", "object_name", "adapter", "usage", "native_finish", "upstream_id",
        "completion_tokens", "tool_calls", "first_token_at", "pending", "strip_reasoning", "text",
    )

    def __init__(
        self, *, generation_id: str, model: str, provider: str, kind: str, adapter, strip_reasoning: bool,
        collect_text: bool = False,
    ):
        self.generation_id = generation_id
        self.model = model
        self.provider = provider
        self.object_name = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self.adapter = adapter
        self.usage: Usage | None = None
        self.native_finish: str | None = None
        self.upstream_id = ""
        self.completion_tokens = 0
        self.tool_calls = False
        self.first_token_at: float | None = None
        self.pending: list[bytes] = []
        self.strip_reasoning = strip_reasoning
        self.text: list[str] | None = [] if collect_text else None  # kept only to place web citations

    def event(self, fields: dict) -> bytes:
        chunk = {
            "id": self.generation_id,
            "provider": self.provider,
            "model": self.model,
            "object": self.object_name,
            "created": int(time.time()),
        }
        chunk.update(fields)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def feed(self, chunks: list[dict]) -> bytes:
        """Our events for these provider chunks; b'' while no token has arrived yet."""
        out = [rendered for chunk in chunks if (rendered := self._rewrite(chunk)) is not None]
        if not out:
            return b""
        if self.first_token_at is None:
            self.pending.extend(out)
            return b""
        if self.pending:
            out = self.pending + out
            self.pending = []
        return b"".join(out)

    @property
    def finish(self) -> str | None:
        return self.adapter.normalize_finish_reason(self.native_finish, tool_calls=self.tool_calls)

    def _rewrite(self, chunk: dict) -> bytes | None:
        if not self.upstream_id and isinstance(chunk.get("id"), str):
            self.upstream_id = chunk["id"]
        usage = usage_from_provider(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None  # the provider's usage chunk: ours replaces it
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            produced = False
            if isinstance(delta, dict):
                if self.strip_reasoning:
                    delta.pop("reasoning", None)
                    delta.pop("reasoning_details", None)
                if delta.get("tool_calls"):
                    self.tool_calls = True
                produced = bool(delta.get("content") or delta.get("reasoning") or delta.get("tool_calls"))
                if self.text is not None and isinstance(delta.get("content"), str):
                    self.text.append(delta["content"])
            elif isinstance(choice.get("text"), str):
                produced = bool(choice["text"])
            if produced:
                self.completion_tokens += 1  # providers stream about one token per delta
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
            native = choice.get("finish_reason")
            if native:
                self.native_finish = native
            choice["native_finish_reason"] = native
            choice["finish_reason"] = (
                self.adapter.normalize_finish_reason(native, tool_calls=self.tool_calls) if native else None
            )
            choice.setdefault("logprobs", None)
        fields: dict = {"choices": choices}
        if chunk.get("system_fingerprint") is not None:
            fields["system_fingerprint"] = chunk["system_fingerprint"]
        return self.event(fields)

    def tail_usage(self, estimate_prompt_tokens: int) -> Usage:
        """The provider's usage, or (a cancelled or broken stream) our count of what was delivered."""
        if self.usage is not None:
            return self.usage
        return Usage(prompt_tokens=estimate_prompt_tokens, completion_tokens=self.completion_tokens)


def error_choice(kind: str) -> dict:
    choice = {"index": 0, "finish_reason": "error", "native_finish_reason": "error", "logprobs": None}
    if kind == "chat":
        choice["delta"] = {"content": ""}
    else:
        choice["text"] = ""
    return choice
