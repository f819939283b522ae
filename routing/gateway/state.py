"""What one call knows and records: its request, route, meter and attempts, and how it answers.

The outline (``call.py``), the attempt loop and the responders all work on this state;
it depends on none of them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import orjson
from django.conf import settings

from accounts.keycache import KeyInfo
from billing.metering import Charge, Meter, Usage
from openrouter_site import metrics
from openrouter_site.errors import ApiError

from ..planning import Attempt, Plan
from ..request_parsing import InferenceRequest
from ..shapes import generation_id
from ..stats import stats_record
from ..sticky import caches_prompts, sticky_set
from ..streaming import error_choice

logger = logging.getLogger("openrouter.gateway")

JSON_HEADERS = [(b"content-type", b"application/json")]
DONE = b"data: [DONE]\n\n"
# A user's own key refused or rate-limited: says nothing about the provider's shared capacity.
BYOK_KEY_FAULTS = frozenset({401, 402, 403, 429})


class ClientGone(Exception):
    """The client disconnected before its request was read, or while its provider was answering."""


class CallState:
    """One inference request: what it asked, where it is routed, its meter and its attempts."""

    def __init__(self, scope, receive, send, surface) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.surface = surface
        self.kind: str = surface.kind
        self.started = time.monotonic()
        self.created_at = dt.datetime.now(dt.UTC)
        self.id = generation_id()
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.response_started = False
        self.disconnected = False
        self.key: KeyInfo | None = None
        self.request: InferenceRequest | None = None
        self.plan: Plan | None = None
        self.attempt: Attempt | None = None  # the attempt being served
        self.base_body: dict | None = None  # the provider body after the request-wide plugins
        self.search_results: list = []
        self.plugin_cost = 0
        self.meter: Meter | None = None
        self.attempts: list[dict] = []  # provider_responses of the generation
        self.streaming_committed = False  # SSE: a token is out, no fallback any more
        self.upstream_seconds = 0.0  # time spent waiting on providers (the rest is gateway overhead)

    @property
    def model_slug(self) -> str:
        if self.attempt is not None:
            return self.attempt.model.slug
        return self.request.model if self.request else ""

    def session_id(self) -> str:
        """``session_id`` from the body, else the ``x-session-id`` header."""
        return (self.request.session_id if self.request else "") or self.header(b"x-session-id")

    def header(self, name: bytes) -> str:
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value else ""

    def site_url(self) -> str:
        if settings.PUBLIC_BASE_URL:
            return settings.PUBLIC_BASE_URL.rstrip("/")
        host = self.headers.get(b"host", b"localhost").decode("latin-1")
        return f"{self.scope.get('scheme', 'http')}://{host}"

    # --- after an attempt ------------------------------------------------------------------------

    def attempt_log(self, attempt: Attempt, status: int, started: float, *, reached_provider: bool = True) -> None:
        """Record one attempt on the generation and, when it says something about the endpoint, in its stats:
        not an attempt skipped for the account's credits, nor the refusal of a user's own key (BYOK_KEY_FAULTS)."""
        self.attempts.append(
            {
                "id": self.id,
                "endpoint_id": str(attempt.endpoint.id),
                "model_permaslug": attempt.model.slug,
                "provider_name": attempt.endpoint.provider_name,
                "status": status,
                "latency": int((time.monotonic() - started) * 1000),
                "is_byok": attempt.is_byok,
            }
        )
        elapsed = time.monotonic() - started
        self.upstream_seconds += elapsed
        if reached_provider:
            overhead = time.monotonic() - self.started - self.upstream_seconds if status == 200 else None
            metrics.attempt_done(
                attempt.endpoint.provider_slug, status, elapsed, fallback=len(self.attempts) > 1, overhead=overhead
            )
        key_fault = attempt.is_byok and status in BYOK_KEY_FAULTS
        if status != 200 and reached_provider and not key_fault:
            stats_record(attempt.endpoint.id, ok=False, status=status if status else None)

    async def remember(
        self, attempt: Attempt, *, ttft_ms: float | None, tokens: int, seconds: float, tool_calls: bool = False
    ) -> None:
        """After a success: endpoint stats (with the tool-calling outcome, the ``:exacto`` signal, when
        the request offered tools) and, where a prompt cache can pay off, stickiness."""
        body = self.request.body
        offered_tools = bool(body.get("tools")) and body.get("tool_choice") != "none"
        stats_record(
            attempt.endpoint.id,
            ok=True,
            status=200,
            ttft_ms=ttft_ms,
            tokens_per_second=(tokens / seconds) if tokens and seconds > 0 else None,
            tool_calls=tool_calls if offered_tools else None,
        )
        if self.plan.sticky_key and (caches_prompts(attempt.endpoint) or self.session_id()):
            try:
                await sticky_set(self.plan.sticky_key, attempt.endpoint.id)
            except Exception:
                logger.warning("could not store sticky routing", exc_info=True)

    def settle(
        self,
        attempt: Attempt | None,
        usage: Usage | None,
        *,
        finish: str | None,
        native: str | None,
        charge: Charge | None,
        upstream_id: str = "",
        first_token_at: float | None = None,
    ) -> None:
        """Close the meter with the generation record; the hold is released when it is written."""
        now = time.monotonic()
        usage = usage or Usage()
        endpoint = attempt.endpoint if attempt else None
        request = self.request
        self.meter.close(
            charge,
            id=self.id,
            account_id=self.key.account_id,
            api_key_id=self.key.key_id,
            key_hash=self.key.hash,
            created_at=self.created_at,
            api_type="embeddings" if self.kind == "embeddings" else "completions",
            model=self.model_slug,
            requested_model=request.model if request else "",
            router=self.plan.router if self.plan else None,
            provider_name=endpoint.provider_name if endpoint else "",
            provider_slug=endpoint.provider_slug if endpoint else "",
            endpoint_id=endpoint.id if endpoint else None,
            upstream_id=upstream_id or "",
            tokens_prompt=usage.prompt_tokens,
            tokens_completion=usage.completion_tokens,
            tokens_reasoning=usage.reasoning_tokens,
            tokens_cached=usage.cached_tokens,
            tokens_cache_write=usage.cache_write_tokens,
            latency_ms=int((now - self.started) * 1000),
            generation_time_ms=int((now - first_token_at) * 1000) if first_token_at else None,
            first_token_ms=int((first_token_at - self.started) * 1000) if first_token_at else None,
            finish_reason=finish,
            native_finish_reason=native,
            streamed=bool(request and request.stream),
            cancelled=self.disconnected,
            http_referer=self.header(b"http-referer") or self.header(b"referer"),
            app_title=self.header(b"x-openrouter-title") or self.header(b"x-title"),
            user_agent=self.header(b"user-agent"),
            external_user=request.user if request else "",
            session_id=self.session_id(),
            provider_responses=self.attempts,
        )

    # --- output ---------------------------------------------------------------------------------

    async def send_json(self, status: int, body: dict, extra_headers: dict[str, str] | None = None) -> None:
        payload = orjson.dumps(body)
        headers = [
            *JSON_HEADERS,
            (b"content-length", str(len(payload)).encode()),
            (b"x-generation-id", self.id.encode()),
        ]
        for name, value in (extra_headers or {}).items():
            headers.append((name.lower().encode(), value.encode()))
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": payload})

    async def fail(self, exc: ApiError) -> None:
        if self.disconnected:
            return
        if exc.user_id is None and self.key is not None and exc.status in (402, 429):
            exc.user_id = self.key.account_public_id
        if not self.response_started:
            body = exc.body() if self.surface.error_body is None else self.surface.error_body(exc, self)
            try:
                await self.send_json(exc.status, body, exc.headers)
            except Exception:
                logger.debug("client gone before the error could be sent", exc_info=True)
            return
        # Headers are out (keep-alive comments were sent): report in-band, then end the stream.
        self.streaming_committed = True  # no more keep-alive comments
        if self.surface.stream_error is not None:
            payload = self.surface.stream_error(exc, self)
        else:
            payload = self._stream_error_chunk(exc)
        try:
            await self.send({"type": "http.response.body", "body": payload, "more_body": False})
        except Exception:
            logger.debug("client gone before the error could be sent", exc_info=True)

    def _stream_error_chunk(self, exc: ApiError) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": self.model_slug,
            "provider": None,
            "error": exc.body()["error"],
            "choices": [error_choice(self.kind)],
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE
