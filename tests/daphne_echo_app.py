"""A tiny ASGI app for tests/test_daphne_tuning.py and tests/test_daphne_http.py: Daphne as make run
starts it, with the project's Twisted tuning, no Django."""

import asyncio
import hashlib
import json

from openrouter_site.daphne_tuning import daphne_tune

daphne_tune()
BIG = b"x" * (8 * 1024 * 1024)  # more than a socket takes at once: the rest waits for the writable event
EVENTS: list[str] = []  # what the app saw after answering (GET /events reads it)


def scope_view(scope) -> dict:
    view = {key: scope[key] for key in ("type", "http_version", "method", "path", "root_path", "scheme", "client", "server")}
    view["raw_path"] = scope["raw_path"].decode("latin-1")
    view["query_string"] = scope["query_string"].decode("latin-1")
    view["headers"] = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]]
    return view


async def json_send(send, status: int, payload) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": "echo: " + message.get("text", "")})
    await send({"type": "websocket.close"})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/early":  # answers without reading the body
        await json_send(send, 413, {"error": "too large"})
        return
    if path == "/split":  # a header value that would end the header line
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-injected: 1")]})
        await send({"type": "http.response.body", "body": b"split"})
        return
    if path == "/raise":
        raise RuntimeError("the application failed before answering")
    digest, size, messages = hashlib.sha256(), 0, 0
    while True:
        message = await receive()
        messages += 1
        digest.update(message.get("body", b""))
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if path == "/body":
        await json_send(send, 200, {"size": size, "sha256": digest.hexdigest(), "messages": messages})
        return
    if path.startswith("/scope"):
        await json_send(send, 200, scope_view(scope))
        return
    if path == "/events":
        await json_send(send, 200, EVENTS)
        return
    if path == "/hold":  # one chunk, then waits for the client to go
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        EVENTS.append("hold: " + (await receive())["type"])
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for index in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % index, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    body = BIG if path == "/big" else b'{"path": "%s"}' % path.encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    await asyncio.sleep(0.05)  # work after the answer (the gateway's stats and stickiness): the client must not wait
