"""The OpenAI Responses surface (``POST /api/v1/responses``): the chat responders, answering in its shapes.

The request was translated into a chat request by ``routing.dialects.responses``; the attempts ran
as for chat completions; here the chat answer becomes ``#OpenResponsesResult`` (JSON) or the
Responses events (SSE), and an error after the stream started becomes ``response.failed``.
"""

from __future__ import annotations

from openrouter_site.errors import ApiError

from ..dialects.responses_answer import ResponsesStream, chat_to_response, error_object, response_object, sse
from ..streaming import StreamState
from .responders import JsonResponder, SseResponder
from .state import DONE, CallState


class ResponsesJsonResponder(JsonResponder):
    def _body(self, data, choices, prepared, usage, charge) -> dict:
        return chat_to_response(self.call.request, super()._body(data, choices, prepared, usage, charge))


class ResponsesSseResponder(SseResponder):
    def stream_state(self, **fields) -> StreamState:
        state = ResponsesStream(request=self.call.request, **fields)
        self.call.surface_stream = state  # for an in-band error after the stream started
        return state


def responses_stream_error(exc: ApiError, call: CallState) -> bytes:
    """``response.failed`` (with the code Codex maps), then ``[DONE]``."""
    state = getattr(call, "surface_stream", None)
    if isinstance(state, ResponsesStream):
        return state.failed(exc) + DONE
    response = response_object(
        call.request, response_id=call.id, model=call.model_slug, created_at=int(call.created_at.timestamp()),
        status="failed", output=[], usage=None, error=error_object(exc),
    )
    return sse("response.failed", {"type": "response.failed", "sequence_number": 0, "response": response}) + DONE
