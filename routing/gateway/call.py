"""The call outline: one inference request from its first byte to its generation record.

read body (413) -> authenticate (401/403) -> validate (400) -> plan the route: model, variants,
routers, fallbacks, provider preferences, health, stickiness, BYOK (400/404) -> free-model rate
limit (429) -> web search -> the attempts, each answered by the surface's JSON or SSE responder
-> the generation record (on every path, through the meter).
"""

from __future__ import annotations

import logging

from django.conf import settings

from accounts.keycache import KeyInfo, key_info
from accounts.keys import bearer_token, key_check, key_hash
from openrouter_site.errors import ApiError, Forbidden, MethodNotAllowed, PayloadTooLarge, ServerError, Unauthorized

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
            await self.fail(exc)
        except Exception:
            logger.exception("unexpected error in %s", self.id)
            await self.fail(ServerError())
        finally:
            meter = self.meter
            if meter is not None and not meter.closed and (meter.held or meter.key_held or any(meter.budget_held)):
                self.settle(None, None, finish="error", native=None, charge=None)  # releases the hold

    async def _run(self) -> None:
        if self.scope["method"] != "POST":
            raise MethodNotAllowed(f"{self.scope['method']} is not allowed here; use POST")
        raw = await self._read_body()
        self.key = await self._authenticate()
        body = parse_body(raw)
        self.request = self.surface.parse(body, settings.DEFAULT_MODEL)
        self.plan = await plan_request(
            body=body,
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
        if self.plan.variant == "thinking" and "reasoning" not in self.base_body:
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
