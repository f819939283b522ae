"""An instant OpenAI-compatible upstream for the benchmark.

A bare ASGI app (no framework) served by uvicorn with uvloop + httptools: it answers
``POST .../chat/completions`` at once, as JSON or as 20 SSE chunks ending in
``data: [DONE]``. It accepts the simulator's per-provider layout
(``/p/<provider>/v1/chat/completions``) as well as plain ``/v1/chat/completions``, so the
gateway, LiteLLM and the direct row can all point at it when the project's simulator is not
available. ``GET .../models`` lists the one model it was asked about last.

Run: ``python bench/mock_upstream.py --port 8090``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STREAM_CHUNKS = 20
WORDS = ["Hello", " there", ",", " friend", "!"]
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
USAGE = {"prompt_tokens": 13, "completion_tokens": STREAM_CHUNKS, "total_tokens": 13 + STREAM_CHUNKS}


async def read_body(receive: Receive) -> bytes:
    """Collect the whole request body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def completion(model: str) -> bytes:
    """A complete non-streaming chat completion."""
    return json.dumps(
        {
            "id": f"chatcmpl-mock-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def stream_events(model: str) -> list[bytes]:
    """The SSE events of a streamed completion, ``data: [DONE]`` included."""
    base = {
        "id": f"chatcmpl-mock-{time.monotonic_ns()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    events = []
    for i in range(STREAM_CHUNKS):
        delta = {"content": WORDS[i % len(WORDS)]}
        if i == 0:
            delta["role"] = "assistant"
        events.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": USAGE})
    return [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a whole response in one body message."""
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def chat_completions(receive: Receive, send: Send) -> None:
    """Answer one chat completion request, streamed or not."""
    try:
        request = json.loads(await read_body(receive))
    except ValueError:
        await respond(send, 400, JSON_HEADERS, b'{"error": {"code": 400, "message": "invalid JSON"}}')
        return
    model = str(request.get("model", "mock-model"))
    if not request.get("stream"):
        await respond(send, 200, JSON_HEADERS, completion(model))
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for event in stream_events(model):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"].rstrip("/")
    if scope["method"] == "POST" and path.endswith("/chat/completions"):
        await chat_completions(receive, send)
    elif scope["method"] == "GET" and path.endswith("/models"):
        await respond(send, 200, JSON_HEADERS, b'{"object": "list", "data": [{"id": "mock-model", "object": "model"}]}')
    else:
        await respond(send, 404, JSON_HEADERS, b'{"error": {"code": 404, "message": "not found"}}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
