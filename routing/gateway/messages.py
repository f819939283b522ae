"""Anthropic's Messages API as a gateway surface: ``POST /api/v1/messages`` and ``/messages/count_tokens``.

The request is translated into the internal chat request at the door
(``routing.dialects.messages``), so the outline, the plan, the attempts, the hold, the charge and
the generation record are the chat ones; only the answer is rendered in Anthropic's shapes: a
``Message`` body, or its SSE events (``ping`` while waiting instead of the keep-alive comment),
and errors in Anthropic's envelope. ``count_tokens`` is an unbilled, authenticated local count.
"""

from __future__ import annotations

from billing.metering import Charge, Usage
from openrouter_site.errors import ApiError, MethodNotAllowed

from ..dialects.messages import (
    PING,
    MessagesStream,
    error_body,
    error_event,
    input_tokens_count,
    message_body,
)
from ..request_parsing import parse_body
from .attempts import Prepared
from .call import Call
from .responders import JsonResponder, SseResponder, reasoning_excluded
from .state import CallState


class MessagesJsonResponder(JsonResponder):
    def _body(self, data: dict, choices: list, prepared: Prepared, usage: Usage, charge: Charge) -> dict:
        call, attempt, adapter = self.call, prepared.attempt, prepared.adapter
        first = choices[0]
        message = first.get("message") if isinstance(first.get("message"), dict) else {}
        native = first.get("finish_reason")
        return message_body(
            id=call.id,
            model=attempt.model.slug,
            provider=attempt.endpoint.provider_name,
            message=message,
            finish=adapter.normalize_finish_reason(native, tool_calls=bool(message.get("tool_calls"))),
            native=native,
            usage=usage,
            charge=charge,
            is_byok=attempt.is_byok,
            strip_reasoning=reasoning_excluded(call.request.body),
        )


class MessagesSseResponder(SseResponder):
    state_class = MessagesStream
    keepalive = PING

    def stream_tail(self, prepared: Prepared, state: MessagesStream, usage: Usage, charge: Charge, *, failed: bool):
        return state.tail(usage, charge, is_byok=prepared.attempt.is_byok, failed=failed, finish=state.finish)


def messages_error_body(exc: ApiError, call: CallState) -> dict:
    return error_body(exc, call.id)


def messages_stream_error(exc: ApiError, call: CallState) -> bytes:
    return error_event(exc.status, exc.message)


class CountTokensCall(Call):
    """``POST /api/v1/messages/count_tokens``: read (413), authenticate (401/403), count (400); no charge."""

    async def _run(self) -> None:
        if self.scope["method"] != "POST":
            raise MethodNotAllowed(f"{self.scope['method']} is not allowed here; use POST")
        raw = await self._read_body()
        self.key = await self._authenticate()
        count = input_tokens_count(parse_body(raw))
        await self.send_json(200, {"input_tokens": count})
