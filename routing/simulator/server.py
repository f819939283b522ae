"""The aiohttp application: simulated provider endpoints and the ``/_control`` API.

Provider routes (any slug)::

    POST /p/<slug>/v1/chat/completions                       OpenAI chat
    POST /p/<slug>/v1/completions                            OpenAI legacy completions
    POST /p/<slug>/v1/embeddings                             OpenAI embeddings
    GET  /p/<slug>/v1/models
    POST /p/<slug>/v1/messages                               Anthropic Messages
    POST /p/<slug>/v1/models/<model>:generateContent         Gemini
    POST /p/<slug>/v1/models/<model>:streamGenerateContent   Gemini (``?alt=sse``)

Every dialect (``dialects``, ``anthropic``, ``gemini``) gets the same latency, failure modes,
pacing and stats; only parsing, encoding and the shape of errors differ.

Control routes::

    GET  /_control/health                       {"ok": true}
    GET  /_control/providers                    settings of every known provider
    GET|PUT|PATCH /_control/providers/<slug>    settings (PUT replaces, PATCH merges)
    GET|PUT|PATCH /_control/default             the default layer under every provider
    POST /_control/reset                        back to the start-up config, stats cleared
    GET  /_control/stats                        {"<slug>": {"requests", "completed", "failed", "cancelled", "tokens_emitted"}}
    GET  /_control/last_request/<slug>          last request body received by that provider
    GET  /_control/last_headers/<slug>          its headers (names lower-cased)

The hot path does no logging and no per-request allocation beyond the reply itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from . import embeddings as embedding_dialect
from .anthropic import ANTHROPIC
from .config import SettingsError
from .dialects import OPENAI_CHAT, OPENAI_TEXT, Dialect, Encoder
from .gemini import GEMINI
from .protocol import Job, RequestError, error_body
from .state import ProviderState, Registry

REGISTRY_KEY = web.AppKey("registry", Registry)
JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_BODY_BYTES = 64 * 1024 * 1024
FAILURE_MODES = frozenset({"500", "502", "503", "429"})  # answered with an error status
MODELS_BODY = orjson.dumps({"object": "list", "data": []})
HEALTH_BODY = orjson.dumps({"ok": True})


class ClientGone(Exception):
    """The client disconnected; stop generating."""


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


def error_response(
    status: int, message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> web.Response:
    return web.Response(body=error_body(message, type_, code, param), status=status, content_type=JSON)


# --- provider endpoints ----------------------------------------------------------------------


async def _read_json(request: web.Request) -> Any:
    """The parsed body; raises RequestError when it is missing, too large or not JSON."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes") from None
    if not raw:
        raise RequestError("request body is empty; expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None


def _check_connected(request: web.Request) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientGone


def _failure_response(dialect: Dialect, mode: str, state: ProviderState) -> web.Response:
    status, body, headers = dialect.failure(mode, state.settings)
    response = web.Response(body=body, status=status, content_type=JSON)
    response.headers.update(headers)
    return response


def _drop_connection(request: web.Request) -> None:
    """Close the connection (after flushing what was written) without finishing the reply."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def _completion(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    """Shared handler of every generation route, whatever its dialect."""
    slug = request.match_info["slug"]
    state = request.app[REGISTRY_KEY].get(slug)
    stats = state.stats
    stats.requests += 1
    if not dialect.authorized(request):
        stats.failed += 1
        status, body = dialect.auth_error
        return web.Response(body=body, status=status, content_type=JSON)
    try:
        body = await _read_json(request)
        state.last_request = body
        state.last_headers = request.raw_headers
        job = dialect.parse(body, request, state)
    except RequestError as exc:
        stats.failed += 1
        return web.Response(
            body=dialect.error(exc.status, exc.message, exc.param), status=exc.status, content_type=JSON
        )
    mode = state.draw_failure()
    try:
        return await _answer(request, state, dialect, job, mode)
    except asyncio.CancelledError:
        if mode is None:
            stats.cancelled += 1
        raise


async def _answer(
    request: web.Request, state: ProviderState, dialect: Dialect, job: Job, mode: str | None
) -> web.StreamResponse:
    settings = state.settings
    stats = state.stats
    if settings.latency_ms > 0:
        await asyncio.sleep(settings.latency_ms / 1000)
    if mode is not None:
        stats.failed += 1
        if mode in FAILURE_MODES:
            return _failure_response(dialect, mode, state)
        if mode == "timeout":
            await asyncio.get_running_loop().create_future()  # until the client gives up
        if mode == "empty":
            job.make_empty()
    if job.stream:
        return await _stream(request, state, dialect.encoder(job), mode)
    if mode == "drop":
        _drop_connection(request)
        return web.Response(status=500)
    tps = settings.tokens_per_second
    output_tokens = job.output_tokens
    if tps > 0 and output_tokens:
        await asyncio.sleep(output_tokens / tps)
    response = web.Response(body=dialect.body(job), content_type=JSON)
    stats.tokens_emitted += output_tokens
    if mode is None:
        stats.completed += 1
    return response


class _Stream:
    """Writes SSE events of one reply, counting the content tokens actually written."""

    __slots__ = ("request", "response", "encoder", "sent")

    def __init__(self, request: web.Request, response: web.StreamResponse, encoder: Encoder) -> None:
        self.request = request
        self.response = response
        self.encoder = encoder
        self.sent = 0

    async def _write(self, data: bytes) -> None:
        _check_connected(self.request)
        await self.response.write(data)

    async def burst(self, tokens: tuple[str, ...], close: bool) -> None:
        """All events in one write (zero tokens_per_second): still one SSE event per token."""
        encoder = self.encoder
        parts = [encoder.opening()]
        parts.extend(map(encoder.content, tokens))
        if close:
            parts.append(encoder.closing(len(tokens)))
        await self._write(b"".join(parts))
        self.sent = len(tokens)

    async def paced(self, tokens: tuple[str, ...], tps: float, close: bool) -> None:
        """One write per token at ``tps`` tokens per second."""
        loop = asyncio.get_running_loop()
        encoder = self.encoder
        await self._write(encoder.opening())
        start = loop.time()
        for index, token in enumerate(tokens):
            delay = start + (index + 1) / tps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            data = encoder.content(token)
            if data:
                await self._write(data)
            self.sent += 1
        if close:
            await self._write(encoder.closing(self.sent))


async def _stream(request: web.Request, state: ProviderState, encoder: Encoder, mode: str | None) -> web.StreamResponse:
    """Stream the reply as SSE; counts tokens actually written and client disconnects."""
    stats = state.stats
    tps = state.settings.tokens_per_second
    drop = mode == "drop"
    tokens = encoder.units[: state.settings.drop_after_chunks] if drop else encoder.units
    response = web.StreamResponse(headers=SSE_HEADERS)
    stream = _Stream(request, response, encoder)
    try:
        await response.prepare(request)
        if tps > 0:
            await stream.paced(tokens, tps, close=not drop)
        else:
            await stream.burst(tokens, close=not drop)
    except (ClientGone, ConnectionError):
        if mode is None:
            stats.cancelled += 1
        return response
    finally:
        stats.tokens_emitted += stream.sent
    if drop:
        _drop_connection(request)
        return response
    if mode is None:
        stats.completed += 1
    try:
        await response.write_eof()
    except ConnectionError:
        pass  # every event was written; only the chunked terminator was lost
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _completion(request, OPENAI_CHAT)


async def text_completions(request: web.Request) -> web.StreamResponse:
    return await _completion(request, OPENAI_TEXT)


async def embeddings(request: web.Request) -> web.Response:
    """OpenAI embeddings, with the same auth, latency, failure modes and stats as a completion."""
    state = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    stats = state.stats
    stats.requests += 1
    if not OPENAI_CHAT.authorized(request):
        stats.failed += 1
        status, body = OPENAI_CHAT.auth_error
        return web.Response(body=body, status=status, content_type=JSON)
    try:
        body = await _read_json(request)
        state.last_request = body
        state.last_headers = request.raw_headers
        job = embedding_dialect.parse(body)
    except RequestError as exc:
        stats.failed += 1
        return web.Response(body=OPENAI_CHAT.error(exc.status, exc.message, exc.param), status=exc.status, content_type=JSON)
    mode = state.draw_failure()
    if state.settings.latency_ms > 0:
        await asyncio.sleep(state.settings.latency_ms / 1000)
    if mode is not None:
        stats.failed += 1
        if mode in FAILURE_MODES:
            return _failure_response(OPENAI_CHAT, mode, state)
        if mode == "timeout":
            await asyncio.get_running_loop().create_future()  # until the client gives up
        if mode == "drop":
            _drop_connection(request)
            return web.Response(status=500)
        if mode == "empty":
            return json_response({"object": "list", "data": [], "model": job.model})
    stats.completed += 1
    return web.Response(body=embedding_dialect.body(job), content_type=JSON)


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    return await _completion(request, ANTHROPIC)


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    return await _completion(request, GEMINI)


async def list_models(request: web.Request) -> web.Response:
    return web.Response(body=MODELS_BODY, content_type=JSON)


async def not_found(request: web.Request) -> web.Response:
    return error_response(404, f"Unknown route: {request.method} {request.path}", code="not_found")


# --- control API -----------------------------------------------------------------------------


def _registry(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


async def _control_body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"body is not valid JSON: {exc}") from None


async def control_health(request: web.Request) -> web.Response:
    return web.Response(body=HEALTH_BODY, content_type=JSON)


async def control_providers(request: web.Request) -> web.Response:
    registry = _registry(request)
    return json_response({slug: state.describe() for slug, state in registry.providers.items()})


async def control_provider(request: web.Request) -> web.Response:
    registry = _registry(request)
    slug = request.match_info["slug"]
    try:
        if request.method == "PUT":
            state = registry.replace(slug, await _control_body(request))
        elif request.method == "PATCH":
            state = registry.merge(slug, await _control_body(request))
        else:
            state = registry.peek(slug)
    except SettingsError as exc:
        return error_response(400, str(exc), code="invalid_settings")
    return json_response(state.describe())


async def control_default(request: web.Request) -> web.Response:
    registry = _registry(request)
    try:
        if request.method in ("PUT", "PATCH"):
            registry.set_default(await _control_body(request), merge=request.method == "PATCH")
    except SettingsError as exc:
        return error_response(400, str(exc), code="invalid_settings")
    return json_response(registry.default)


async def control_reset(request: web.Request) -> web.Response:
    _registry(request).reset()
    return json_response({"ok": True})


async def control_stats(request: web.Request) -> web.Response:
    return json_response(_registry(request).stats())


async def control_last_request(request: web.Request) -> web.Response:
    state = _registry(request).providers.get(request.match_info["slug"])
    if state is None or state.last_request is None:
        return error_response(404, "no request received by this provider yet", code="not_found")
    return json_response(state.last_request)


async def control_last_headers(request: web.Request) -> web.Response:
    state = _registry(request).providers.get(request.match_info["slug"])
    if state is None or state.last_headers is None:
        return error_response(404, "no request received by this provider yet", code="not_found")
    return json_response(
        {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in state.last_headers}
    )


# --- application and server ------------------------------------------------------------------


def create_app(registry: Registry | None = None) -> web.Application:
    """The simulator application (provider routes, control API, JSON 404 for the rest)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry or Registry()
    router = app.router
    router.add_post("/p/{slug}/v1/chat/completions", chat_completions)
    router.add_post("/p/{slug}/v1/completions", text_completions)
    router.add_post("/p/{slug}/v1/embeddings", embeddings)
    router.add_get("/p/{slug}/v1/models", list_models)
    router.add_post("/p/{slug}/v1/messages", anthropic_messages)
    router.add_post("/p/{slug}/v1/models/{target:.+}", gemini_generate)
    router.add_get("/_control/health", control_health)
    router.add_get("/_control/providers", control_providers)
    for method in ("GET", "PUT", "PATCH"):
        router.add_route(method, "/_control/providers/{slug}", control_provider)
        router.add_route(method, "/_control/default", control_default)
    router.add_post("/_control/reset", control_reset)
    router.add_get("/_control/stats", control_stats)
    router.add_get("/_control/last_request/{slug}", control_last_request)
    router.add_get("/_control/last_headers/{slug}", control_last_headers)
    router.add_route("*", "/{tail:.*}", not_found)
    return app


async def serve(host: str, port: int, registry: Registry, port_file: str | None = None) -> None:
    """Run until SIGINT/SIGTERM. Prints (and optionally writes to ``port_file``) the bound port."""
    runner = web.AppRunner(create_app(registry), access_log=None, handler_cancellation=True, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    bound_port = runner.addresses[0][1]
    if port_file:
        tmp = Path(f"{port_file}.tmp")
        tmp.write_text(str(bound_port))
        os.replace(tmp, port_file)
    print(f"provider simulator listening on http://{host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
