"""The provider client keeps no cookies: one account's provider answer never sets another's request.

A host name, not an IP address: a cookie jar would ignore cookies from IP addresses anyway.
"""

import asyncio

from aiohttp import web

from routing import upstream


def test_a_providers_set_cookie_is_not_sent_back():
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "account-a-secret")
        return response

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            for _ in range(2):
                response = await upstream.send(f"http://localhost:{port}/v1/chat/completions", {}, b"{}")
                assert response.status == 200
                await response.read()
                response.release()
        finally:
            await upstream.close()
            await runner.cleanup()

    asyncio.run(scenario())
    assert seen == [None, None]
