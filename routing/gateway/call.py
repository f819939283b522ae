"""The call outline: one inference request from its first byte to its generation record.

read body (413) -> authenticate (401/403) -> the preset it names, if any (400/404) -> validate (400)
-> plan the route: model, variants, routers, fallbacks, provider preferences, health, stickiness,
BYOK (400/404) -> free-model rate limit (429) -> web search -> the attempts, each answered by the
surface's JSON or SSE responder -> the generation record (on every path, through the meter) -> with
prompt logging on, the request and the answer handed to the content writer.
"""

from __future__ import annotations

import logging

from django.conf import settings

from accounts.keycache import KeyInfo, key_info
from accounts.keys import bearer_token, key_check, key_hash
from activity.content_log import MAX_CAPTURE_BYTES, ContentItem, content_submit
from openrouter_site.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
)
from presets.cache import preset_for
from presets.merge import PresetError, preset_apply, preset_reference

from ..planning import plan_request
from ..plugins.web_search import SearchError, backend_for_settings, inject_results, search_query, web_options
from ..ratelimits import free_model_check, free_model_rate_limited
from ..request_parsing import parse_body, provider_body
from .attempts import attempts_run
from .state import CallState, ClientGone

logger = logging.getLogger("openrouter.gateway")


class Call(CallState):
    """The outline, the same for every surface."""

    # --- the outline -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except ClientGone:
            pass
        except ApiError as exc:
            self._hold_release()  # before the answer: a client that sees its error sees its credit back
            await self.fail(exc)
        except Exception:
            logger.exception("unexpected error in %s", self.id)
            self._hold_release()
            await self.fail(ServerError())
        finally:
            self._hold_release()
            if self.logged is not None and self.meter is not None:  # prompt logging: a generation was recorded
                self._log_content()

    def _hold_release(self) -> None:
        meter = self.meter
        if meter is not None and not meter.closed and (meter.held or meter.key_held or any(meter.budget_held)):
            self.settle(None, None, finish="error", native=None, charge=None)  # releases the hold

    async def _run(self) -> None:
        if self.scope["method"] != "POST":
            raise MethodNotAllowed(f"{self.scope['method']} is not allowed here; use POST")
        raw = await self._read_body()
        self.key = await self._authenticate()
        if self.key.training_discount:  # the account logs its prompts (the 1% discount): keep a copy of both ways
            self.logged = (raw, [])
            self.send = self._copying(self.send)
        await self.serve(parse_body(raw))

    async def serve(self, body: dict) -> None:
        """The core every caller of the gateway shares, from the parsed body of an authenticated caller
        (``self.key``) on: the HTTP handler above, and the chatroom's socket (``sessions.py``)."""
        body = await self._with_preset(body)
        self.request = self.surface.parse(body, settings.DEFAULT_MODEL)
        self.plan = await plan_request(
            body=self.request.body,  # the chat request (a surface may have translated its body into one)
            requested=self.request.model,
            kind=self.kind,
            account_id=self.key.account_id,
            key_hash=self.key.hash,
            session_id=self.session_id(),
            max_tokens=self.request.max_tokens,
        )
        if self.plan.free:
            decision = await free_model_check(account_id=self.key.account_id, purchased_nanos=self.key.purchased)
            if not decision.allowed:
                raise free_model_rate_limited(decision)
        self.base_body = provider_body(self.request)
        if self.plan.variant == "thinking" and "reasoning" not in self.base_body and self.kind != "embeddings":
            self.base_body["reasoning"] = {"enabled": True}
        if self.plan.web is not None and self.kind == "chat":
            await self._web_search()
        responder_class = self.surface.sse_responder if self.request.stream else self.surface.json_responder
        async with responder_class(self) as responder:
            await attempts_run(self, responder)

    # --- input -----------------------------------------------------------------------------

    async def _read_body(self) -> bytes:
        limit = settings.GATEWAY_MAX_BODY_BYTES
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- prompt logging (opt-in per account; stored off the hot path, encrypted) ---------------------

    logged: tuple[bytes, list[bytes]] | None = None
    response_status = 0

    def _copying(self, send):
        copied = self.logged[1]
        size = [0]

        async def copy(message) -> None:
            if message["type"] == "http.response.start":
                self.response_status = message["status"]
            elif message["type"] == "http.response.body" and size[0] < MAX_CAPTURE_BYTES:
                body = message.get("body", b"")
                copied.append(body)
                size[0] += len(body)
            await send(message)

        return copy

    def _log_content(self) -> None:
        raw, copied = self.logged
        content_submit(ContentItem(
            generation_id=self.id, account_id=self.key.account_id, created_at=self.created_at,
            surface=self.surface.name, request=raw, response=b"".join(copied), status=self.response_status,
        ))

    async def _with_preset(self, body: dict) -> dict:
        """The body with its preset applied (``@preset/slug``, ``preset``): read from a per-process cache, and
        only when the body names one."""
        try:
            reference = preset_reference(body)
        except PresetError as exc:
            raise BadRequest(str(exc)) from None
        if reference is None:
            return body
        preset = await preset_for(account_id=self.key.account_id, slug=reference.slug)
        if preset is None:
            raise NotFound(f"Preset {reference.slug!r} not found")
        return preset_apply(body=body, surface=self.surface.name, preset=preset, reference=reference)

    async def _authenticate(self) -> KeyInfo:
        authorization = self.headers.get(b"authorization")
        token = bearer_token(authorization.decode("latin-1")) if authorization else None
        if token is None and (api_key := self.headers.get(b"x-api-key")):  # Anthropic's clients
            token = api_key.decode("latin-1").strip() or None
        if token is None:
            raise Unauthorized("No auth credentials found")
        info = await key_info(key_hash(token))
        key_check(info, now=self.created_at)
        if info.is_management:
            raise Forbidden("Management keys cannot be used for inference; use an API key")
        return info

    # --- the web plugin (request-wide; per-attempt plugins are in attempts.py) ------------------

    async def _web_search(self) -> None:
        options = web_options(self.plan.web)
        backend = backend_for_settings()
        query = search_query(self.base_body.get("messages") or [])
        if not query:
            return
        try:
            self.search_results = await backend.search(
                query,
                max_results=options.max_results,
                include_domains=options.include_domains,
                exclude_domains=options.exclude_domains,
            )
        except SearchError:
            logger.warning("%s: web search failed; answering without results", self.id, exc_info=True)
            return
        self.plugin_cost += backend.price_nanos(len(self.search_results))
        self.base_body["messages"] = inject_results(
            self.base_body["messages"], self.search_results, search_prompt=options.search_prompt, date=self.created_at
        )
