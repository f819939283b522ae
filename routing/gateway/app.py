"""The gateway's ASGI entry: one ``Call`` per request, on the surface its path names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from billing.metering import meters_flush
from openrouter_site.errors import ApiError

from .. import upstream
from ..dialects.messages import messages_parse
from ..dialects.responses import parse_responses
from ..request_parsing import InferenceRequest, parse_chat, parse_completion, parse_embeddings
from .call import Call
from .embeddings import EmbeddingsResponder
from .messages import (
    CountTokensCall,
    MessagesJsonResponder,
    MessagesSseResponder,
    messages_error_body,
    messages_stream_error,
)
from .responders import JsonResponder, SseResponder
from .responses import ResponsesJsonResponder, ResponsesSseResponder, responses_stream_error
from .state import CallState


@dataclass(frozen=True, slots=True)
class Surface:
    """One inference API: how its body is read, and how an attempt is answered (JSON or SSE)."""

    kind: str  # "chat" | "completions" | "embeddings": the provider request and the response objects
    parse: Callable[[dict, str], InferenceRequest]
    json_responder: type
    sse_responder: type
    name: str = ""  # the API as clients see it ("messages", "responses", ...); defaults to ``kind``
    # How an error is answered on this API, before any byte went out (a JSON body) and in-band after
    # the stream started (the bytes that end the stream). None: OpenRouter's envelope and chunk.
    error_body: Callable[[ApiError, CallState], dict] | None = None
    stream_error: Callable[[ApiError, CallState], bytes] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.kind)


SURFACES = {
    "chat": Surface("chat", parse_chat, JsonResponder, SseResponder),
    "completions": Surface("completions", parse_completion, JsonResponder, SseResponder),
    "responses": Surface(
        "chat", parse_responses, ResponsesJsonResponder, ResponsesSseResponder,
        name="responses", stream_error=responses_stream_error,
    ),
    "embeddings": Surface("embeddings", parse_embeddings, EmbeddingsResponder, EmbeddingsResponder),
    "messages": Surface(
        kind="chat", name="messages", parse=messages_parse, json_responder=MessagesJsonResponder,
        sse_responder=MessagesSseResponder, error_body=messages_error_body, stream_error=messages_stream_error,
    ),
}
# The same surface (its errors in Anthropic's envelope) for Anthropic's local token count.
SURFACES["messages_count_tokens"] = SURFACES["messages"]
CALLS = {"messages_count_tokens": CountTokensCall}  # a surface with its own outline; Call otherwise


class GatewayApp:
    async def __call__(self, scope, receive, send, kind: str) -> None:
        await CALLS.get(kind, Call)(scope, receive, send, SURFACES[kind]).run()

    async def lifespan(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, meters_flush, 10.0)
                await upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
