"""A tiny ASGI app for tests/test_daphne_tuning.py: Daphne with the project's Twisted tuning, no Django."""

import asyncio

from openrouter_site.daphne_tuning import daphne_tune

daphne_tune()
BIG = b"x" * (8 * 1024 * 1024)  # more than a socket takes at once: the rest waits for the writable event


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
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
