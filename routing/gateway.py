"""The inference hot path: ``POST /api/v1/chat/completions`` and ``/api/v1/completions``.

A plain ASGI handler, mounted by ``openrouter_site.asgi`` in front of Django, so no
view or middleware machinery runs per request. Nothing here touches the
database on the event loop: the key and the catalog come from in-process caches
(misses are read in a worker thread), the credit hold is one atomic counter
operation (billing.counters), and the charge and the generation record are
handed to the settlement writer after the response is out.

One request:
  read body (413) -> authenticate (401/403) -> validate (400) -> resolve the model (400/404)
  -> hold the worst case (402) -> try endpoints cheapest first, falling back on a provider
  failure before the first token -> answer (JSON, or SSE with keep-alive comments, a final
  usage chunk and [DONE]) -> settle the real cost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import aiohttp
import orjson
from django.conf import settings

from accounts.keycache import KeyInfo, key_info
from accounts.keys import bearer_token, key_hash
from activity.records import GenerationRecord
from billing import money
from billing.counters import counters, limit_window
from billing.pricing import Cost, Usage, usage_cost, worst_case_cost
from billing.settlement import settlement_flush, settlement_submit
from openrouter_site.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)

from . import catalog_cache, upstream
from .catalog_cache import EndpointEntry, ModelEntry
from .request_parsing import InferenceRequest, parse_body, parse_chat, parse_completion, upstream_body
from .shapes import generation_id, normalize_finish_reason, usage_body, usage_from_provider
from .tokens import estimate_prompt_tokens, prompt_tokens_upper_bound

logger = logging.getLogger("openrouter.gateway")

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"
RETRYABLE_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class AttemptFailed(Exception):
    """A provider failed before the first token: try the next endpoint."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, retryable: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.retryable = retryable


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class GatewayApp:
    async def __call__(self, scope, receive, send, kind: str) -> None:
        await Call(scope, receive, send, kind).run()

    async def lifespan(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, settlement_flush, 10.0)
                await upstream.close_all()
                await send({"type": "lifespan.shutdown.complete"})
                return


class Call:
    """One inference request, from its first byte to its settlement."""

    def __init__(self, scope, receive, send, kind: str) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.kind = kind
        self.started = time.monotonic()
        self.created_at = dt.datetime.now(dt.UTC)
        self.id = generation_id()
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.response_started = False
        self.key: KeyInfo | None = None
        self.request: InferenceRequest | None = None
        self.model: ModelEntry | None = None
        self.held = 0
        self.window: str | None = None
        self.settled = False
        self.attempts: list[dict] = []
        self.disconnected = False
        self.upstream_response: aiohttp.ClientResponse | None = None
        self.lock: asyncio.Lock | None = None
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.streaming_committed = False

    # --- the outline -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except ClientGone:
            pass
        except ApiError as exc:
            await self._fail(exc)
        except Exception:
            logger.exception("unexpected error in %s", self.id)
            await self._fail(ServerError())
        finally:
            if self.keepalive_handle is not None:
                self.keepalive_handle.cancel()
            if self.held and not self.settled:
                self._settle(endpoint=None, usage=None, finish="error", native=None)

    async def _run(self) -> None:
        if self.scope["method"] != "POST":
            raise MethodNotAllowed(f"{self.scope['method']} is not allowed here; use POST")
        raw = await self._read_body()
        self.key = await self._authenticate()
        body = parse_body(raw)
        default_model = getattr(settings, "DEFAULT_MODEL", "openai/gpt-4o-mini")
        if self.kind == "chat":
            self.request = parse_chat(body, default_model)
        else:
            self.request = parse_completion(body, default_model)
        self.model = await self._resolve_model(self.request.model)
        endpoints = self.model.endpoints
        if not endpoints:
            raise NotFound(f"No endpoints found for {self.model.slug}.")
        prompt_bound = prompt_tokens_upper_bound(body)
        self.window = limit_window(self.key.limit_reset) if self.key.limit is not None else None
        await self._hold_for(endpoints[0], prompt_bound, first=True)
        if self.request.stream:
            await self._serve_stream(endpoints, prompt_bound)
        else:
            await self._serve_json(endpoints, prompt_bound)

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
        if token is None:
            raise Unauthorized("No auth credentials found")
        info = await key_info(key_hash(token))
        if info is None:
            raise Unauthorized("User not found.")
        if info.disabled:
            raise Unauthorized("This API key is disabled")
        if info.expires_at is not None and info.expires_at <= self.created_at:
            raise Unauthorized("This API key has expired")
        if info.is_management:
            raise Forbidden("Management keys cannot be used for inference; use an API key")
        return info

    async def _resolve_model(self, slug: str) -> ModelEntry:
        model = await catalog_cache.model_lookup(slug)
        if model is None:
            raise BadRequest(f"{slug} is not a valid model ID", metadata={"availability": {"code": "model_not_found"}})
        return model

    # --- credits ---------------------------------------------------------------------------

    def _max_output(self, endpoint: EndpointEntry, prompt_bound: int) -> int:
        if self.request.max_tokens is not None:
            return self.request.max_tokens
        cap = endpoint.max_completion_tokens or self.model.max_completion_tokens
        if cap:
            return cap
        return max(endpoint.context_length - prompt_bound, 1)

    async def _hold_for(self, endpoint: EndpointEntry, prompt_bound: int, *, first: bool) -> bool:
        """Make the hold cover ``endpoint``'s worst case. On the first endpoint a refusal is a 402."""
        max_out = self._max_output(endpoint, prompt_bound)
        needed = worst_case_cost(endpoint, prompt_tokens=prompt_bound, max_completion_tokens=max_out)
        if first or needed > self.held:
            extra = needed - self.held if not first else needed
            result = await counters().hold(
                account_id=self.key.account_id,
                amount=max(extra, 0),
                key_hash=self.key.hash,
                key_limit=self.key.limit,
                window=self.window or "all",
            )
            if not result.ok:
                if first:
                    raise self._payment_required(endpoint, result.reason, result.available, prompt_bound, max_out)
                return False
            self.held += max(extra, 0)
        return True

    def _payment_required(self, endpoint, reason, available, prompt_bound, max_out) -> PaymentRequired:
        base = self._site_url()
        metadata = {"provider_name": None}
        user_id = self.key.account_public_id
        if available <= 0 and reason == "balance":
            return PaymentRequired(
                f"Insufficient credits. This account never purchased credits or its balance is exhausted. "
                f"Add more using {base}/settings/credits",
                metadata=metadata,
                user_id=user_id,
            )
        prompt_cost = money.tokens_cost_ceiling(prompt_bound, endpoint.price_prompt) + endpoint.price_request
        if reason == "key_limit":
            where = f"{base}/settings/keys and create a key with a higher limit"
        else:
            where = f"{base}/settings/credits and add more credits"
        if prompt_cost > available:
            affordable = money.affordable_tokens(max(available - endpoint.price_request, 0), endpoint.price_prompt)
            return PaymentRequired(
                f"Prompt tokens limit exceeded: {prompt_bound} > {affordable}. To increase, visit {where}",
                metadata=metadata,
                user_id=user_id,
            )
        affordable = money.affordable_tokens(available - prompt_cost, endpoint.price_completion)
        return PaymentRequired(
            f"This request requires more credits, or fewer max_tokens. You requested up to {max_out} tokens, "
            f"but can only afford {min(affordable, max_out)}. To increase, visit {where}",
            metadata=metadata,
            user_id=user_id,
        )

    def _site_url(self) -> str:
        if settings.PUBLIC_BASE_URL:
            return settings.PUBLIC_BASE_URL.rstrip("/")
        host = self.headers.get(b"host", b"localhost").decode("latin-1")
        return f"{self.scope.get('scheme', 'http')}://{host}"

    def _settle(
        self,
        *,
        endpoint: EndpointEntry | None,
        usage: Usage | None,
        finish: str | None,
        native: str | None,
        upstream_id: str = "",
        first_token_at: float | None = None,
        bill_errors: bool = False,
    ) -> tuple[Cost, int]:
        """Work out the charge (zero-completion insurance, cap at the hold) and queue the record."""
        self.settled = True
        now = time.monotonic()
        cost = Cost(0, 0, 0, 0)
        charged = 0
        if endpoint is not None and usage is not None:
            cost = usage_cost(endpoint, usage, training_discount=self.key.training_discount)
            insured = usage.completion_tokens == 0 and not finish
            if finish == "error" and not bill_errors:
                insured = True
            charged = 0 if insured else cost.total
            if charged > self.held:
                logger.warning("%s: cost %s exceeds hold %s; charging the hold", self.id, charged, self.held)
                charged = self.held
        usage = usage or Usage()
        record = GenerationRecord(
            id=self.id,
            account_id=self.key.account_id,
            api_key_id=self.key.key_id,
            key_hash=self.key.hash,
            key_window=self.window,
            created_at=self.created_at,
            held=self.held,
            cost=charged,
            cost_prompt=cost.prompt,
            cost_completion=cost.completion,
            api_type="completions",
            model=self.model.slug if self.model else (self.request.model if self.request else ""),
            requested_model=self.request.model if self.request else "",
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
            finish_reason=normalize_finish_reason(finish) if finish else None,
            native_finish_reason=native,
            streamed=bool(self.request and self.request.stream),
            cancelled=self.disconnected,
            http_referer=self._header(b"http-referer") or self._header(b"referer"),
            app_title=self._header(b"x-openrouter-title") or self._header(b"x-title"),
            user_agent=self._header(b"user-agent"),
            external_user=self.request.user if self.request else "",
            session_id=(self.request.session_id if self.request else "") or self._header(b"x-session-id"),
            provider_responses=self.attempts,
        )
        settlement_submit(record)
        return cost, charged

    def _header(self, name: bytes) -> str:
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value else ""

    # --- upstream attempts -------------------------------------------------------------------

    def _attempt_log(self, endpoint: EndpointEntry, status: int, started: float) -> None:
        self.attempts.append(
            {
                "id": self.id,
                "endpoint_id": str(endpoint.id),
                "model_permaslug": self.model.slug,
                "provider_name": endpoint.provider_name,
                "status": status,
                "latency": int((time.monotonic() - started) * 1000),
                "is_byok": False,
            }
        )

    async def _open(self, endpoint: EndpointEntry, prompt_bound: int) -> aiohttp.ClientResponse:
        path = "/chat/completions" if self.kind == "chat" else "/completions"
        body = upstream_body(self.request, endpoint.upstream_model_id, None)
        try:
            response = await upstream.post(endpoint.base_url + path, body, endpoint.api_key, stream=self.request.stream)
        except TimeoutError:
            raise AttemptFailed(408, "Provider timed out") from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed(502, f"Provider connection failed: {type(exc).__name__}") from None
        if response.status != 200:
            try:
                payload = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                payload = b""
            response.release()
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise AttemptFailed(
                response.status,
                _provider_message(payload) or f"Provider returned {response.status}",
                retry_after=retry_after,
                retryable=response.status in RETRYABLE_STATUSES or response.status >= 500,
            )
        return response

    def _all_failed(self, failures: list[AttemptFailed]) -> ApiError:
        previous = [
            {"provider": a["provider_name"], "status": a["status"], "code": a["status"]} for a in self.attempts
        ]
        metadata = {"provider_name": self.attempts[-1]["provider_name"] if self.attempts else None,
                    "previous_errors": previous}
        if failures and all(f.status == 429 for f in failures):
            hints = [f.retry_after for f in failures if f.retry_after is not None]
            headers = {"Retry-After": str(int(min(hints) + 0.999))} if hints else {}
            metadata["error_type"] = "rate_limit_exceeded"
            return RateLimited(
                f"{self.model.slug} is temporarily rate-limited upstream. Please retry shortly.",
                metadata=metadata,
                headers=headers,
            )
        last = failures[-1] if failures else None
        if last is not None and not last.retryable and 400 <= last.status < 500:
            metadata["error_type"] = "invalid_request"
            return ApiError(last.message, status=last.status, metadata=metadata)
        metadata["error_type"] = "provider_unavailable"
        return ServiceUnavailable(
            f"No provider could serve {self.model.slug} right now: {last.message if last else 'no endpoints'}",
            metadata=metadata,
        )

    # --- non-streaming ----------------------------------------------------------------------

    async def _serve_json(self, endpoints, prompt_bound: int) -> None:
        failures: list[AttemptFailed] = []
        for index, endpoint in enumerate(endpoints):
            if index and not await self._hold_for(endpoint, prompt_bound, first=False):
                self._attempt_log(endpoint, 402, time.monotonic())
                failures.append(AttemptFailed(402, "Insufficient credits for this provider", retryable=False))
                continue
            started = time.monotonic()
            try:
                response = await self._open(endpoint, prompt_bound)
                try:
                    payload = await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    raise AttemptFailed(502, "Provider connection dropped") from None
                finally:
                    response.release()
                data = _json_or_none(payload)
                choices = data.get("choices") if isinstance(data, dict) else None
                if not isinstance(choices, list) or not choices:
                    raise AttemptFailed(502, "Provider returned an invalid response")
                usage = usage_from_provider(data.get("usage")) or Usage()
                if _is_empty(choices, usage, self.kind):
                    raise AttemptFailed(502, "Provider returned an empty response")
            except AttemptFailed as failure:
                self._attempt_log(endpoint, failure.status, started)
                failures.append(failure)
                if not failure.retryable:
                    break
                continue
            self._attempt_log(endpoint, 200, started)
            first_token_at = time.monotonic()
            native = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
            cost, charged = self._settle(
                endpoint=endpoint,
                usage=usage,
                finish=native or "stop",
                native=native,
                upstream_id=str(data.get("id") or ""),
                first_token_at=first_token_at,
            )
            await self._send_json(200, self._result_body(data, choices, endpoint, usage, cost, charged))
            return
        raise self._all_failed(failures)

    def _result_body(self, data: dict, choices: list, endpoint: EndpointEntry, usage: Usage, cost: Cost, charged: int) -> dict:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            native = choice.get("finish_reason")
            choice["native_finish_reason"] = native
            choice["finish_reason"] = normalize_finish_reason(native)
            choice.setdefault("logprobs", None)
            message = choice.get("message")
            if isinstance(message, dict):
                message.setdefault("refusal", None)
                message.setdefault("reasoning", None)
        return {
            "id": self.id,
            "provider": endpoint.provider_name,
            "model": self.model.slug,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "system_fingerprint": data.get("system_fingerprint"),
            "choices": choices,
            "usage": usage_body(usage, cost, charged),
        }

    # --- streaming ------------------------------------------------------------------------------

    async def _serve_stream(self, endpoints, prompt_bound: int) -> None:
        self.lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self.keepalive_handle = loop.call_later(settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due)
        watcher = loop.create_task(self._watch_disconnect())
        try:
            failures: list[AttemptFailed] = []
            for index, endpoint in enumerate(endpoints):
                if self.disconnected:
                    return
                if index and not await self._hold_for(endpoint, prompt_bound, first=False):
                    self._attempt_log(endpoint, 402, time.monotonic())
                    failures.append(AttemptFailed(402, "Insufficient credits for this provider", retryable=False))
                    continue
                started = time.monotonic()
                try:
                    await self._stream_from(endpoint, prompt_bound, started)
                    return
                except AttemptFailed as failure:
                    self._attempt_log(endpoint, failure.status, started)
                    failures.append(failure)
                    if not failure.retryable:
                        break
            if not self.disconnected:
                raise self._all_failed(failures)
        finally:
            watcher.cancel()

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                if self.upstream_response is not None:
                    self.upstream_response.close()
                return

    def _keepalive_due(self) -> None:
        if self.streaming_committed or self.settled or self.disconnected:
            return
        asyncio.get_running_loop().create_task(self._send_keepalive())
        self.keepalive_handle = asyncio.get_running_loop().call_later(
            settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due
        )

    async def _send_keepalive(self) -> None:
        async with self.lock:
            if self.streaming_committed or self.settled or self.disconnected:
                return
            await self._start_sse()
            await self.send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def _start_sse(self) -> None:
        if not self.response_started:
            self.response_started = True
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-generation-id", self.id.encode())],
                }
            )

    async def _stream_from(self, endpoint: EndpointEntry, prompt_bound: int, started: float) -> None:
        response = await self._open(endpoint, prompt_bound)
        self.upstream_response = response
        state = StreamState(self, endpoint)
        buffer = b""
        try:
            try:
                async for data in response.content.iter_any():
                    buffer += data
                    if b"\r\n" in buffer:
                        buffer = buffer.replace(b"\r\n", b"\n")
                    events, _, buffer = buffer.rpartition(b"\n\n")
                    if not events:
                        continue
                    out = state.feed(events)
                    if out:
                        if not self.streaming_committed:
                            self._attempt_log(endpoint, 200, started)
                            await self._commit_stream()
                        await self.send({"type": "http.response.body", "body": out, "more_body": True})
                    if state.done:
                        break
                if buffer.strip():
                    out = state.feed(buffer)
                    if out and self.streaming_committed:
                        await self.send({"type": "http.response.body", "body": out, "more_body": True})
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if not self.streaming_committed and not self.disconnected:
                    raise AttemptFailed(502, f"Provider stream failed: {type(exc).__name__}") from None
                state.failed = not self.disconnected
        finally:
            if self.disconnected:
                response.close()  # drops the connection: the provider stops generating
            else:
                response.release()
            self.upstream_response = None
        if not self.streaming_committed and not self.disconnected:
            raise AttemptFailed(502, "Provider returned an empty stream")
        if self.disconnected:
            self._settle_stream(endpoint, state, finish=state.finish or "stop", bill_errors=True)
            return
        if not state.done and not state.failed:
            state.failed = True  # the stream ended without [DONE]: treat as a provider failure
        await self._finish_stream(endpoint, state)

    async def _commit_stream(self) -> None:
        async with self.lock:
            self.streaming_committed = True
            if self.keepalive_handle is not None:
                self.keepalive_handle.cancel()
            await self._start_sse()

    def _settle_stream(self, endpoint: EndpointEntry, state: StreamState, *, finish: str, bill_errors: bool):
        usage = state.usage
        if usage is None:
            usage = Usage(
                prompt_tokens=estimate_prompt_tokens(self.request.body),
                completion_tokens=state.completion_tokens,
            )
        return usage, *self._settle(
            endpoint=endpoint,
            usage=usage,
            finish=finish,
            native=state.native_finish,
            upstream_id=state.upstream_id,
            first_token_at=state.first_token_at,
            bill_errors=bill_errors,
        )

    async def _finish_stream(self, endpoint: EndpointEntry, state: StreamState) -> None:
        tail = b""
        if state.failed:
            tail += state.event(
                {
                    "error": {
                        "code": 502,
                        "message": "Provider disconnected mid-stream",
                        "metadata": {"error_type": "provider_unavailable", "provider_name": endpoint.provider_name},
                    },
                    "choices": [_error_choice(self.kind)],
                }
            )
            usage, cost, charged = self._settle_stream(endpoint, state, finish="error", bill_errors=True)
        else:
            usage, cost, charged = self._settle_stream(
                endpoint, state, finish=state.finish or "stop", bill_errors=False
            )
        tail += state.event({"choices": [], "usage": usage_body(usage, cost, charged)})
        tail += DONE
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})

    # --- output ---------------------------------------------------------------------------------

    async def _send_json(self, status: int, body: dict, extra_headers: dict[str, str] | None = None) -> None:
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

    async def _fail(self, exc: ApiError) -> None:
        if self.disconnected:
            return
        if exc.user_id is None and self.key is not None and exc.status in (402, 429):
            exc.user_id = self.key.account_public_id
        if not self.response_started:
            try:
                await self._send_json(exc.status, exc.body(), exc.headers)
            except Exception:
                logger.debug("client gone before the error could be sent", exc_info=True)
            return
        # Headers are out (keep-alive comments were sent): report in-band, then end the stream.
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": self.model.slug if self.model else "",
            "provider": None,
            "error": exc.body()["error"],
            "choices": [_error_choice(self.kind)],
        }
        self.streaming_committed = True  # no more keep-alive comments
        try:
            await self.send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE, "more_body": False}
            )
        except Exception:
            logger.debug("client gone before the error could be sent", exc_info=True)


class StreamState:
    """Rewrites a provider's SSE events into OpenRouter's and remembers what they said."""

    __slots__ = (
        "call", "endpoint", "usage", "finish", "native_finish", "upstream_id", "completion_tokens",
        "first_token_at", "done", "failed", "object_name", "prefix_pending",
    )

    def __init__(self, call: Call, endpoint: EndpointEntry) -> None:
        self.call = call
        self.endpoint = endpoint
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.native_finish: str | None = None
        self.upstream_id = ""
        self.completion_tokens = 0
        self.first_token_at: float | None = None
        self.done = False
        self.failed = False
        self.object_name = "chat.completion.chunk" if call.kind == "chat" else "text_completion"
        self.prefix_pending: list[bytes] = []  # events held back until the first token

    def event(self, fields: dict) -> bytes:
        chunk = {
            "id": self.call.id,
            "provider": self.endpoint.provider_name,
            "model": self.call.model.slug,
            "object": self.object_name,
            "created": int(time.time()),
        }
        chunk.update(fields)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def feed(self, events: bytes) -> bytes:
        """Turn complete upstream events into our events. Returns b'' until the first token."""
        out: list[bytes] = []
        for line in events.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk and not chunk.get("choices"):
                self.failed = True
                self.done = True
                break
            rendered = self._rewrite(chunk)
            if rendered is not None:
                out.append(rendered)
        if not out:
            return b""
        if self.first_token_at is None:
            self.prefix_pending.extend(out)
            if not self._has_token():
                return b""
            out, self.prefix_pending = self.prefix_pending, []
        return b"".join(out)

    def _has_token(self) -> bool:
        return self.completion_tokens > 0

    def _rewrite(self, chunk: dict) -> bytes | None:
        if not self.upstream_id and isinstance(chunk.get("id"), str):
            self.upstream_id = chunk["id"]
        usage = usage_from_provider(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None  # the provider's usage chunk: ours replaces it
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = None
            if isinstance(delta, dict):
                text = delta.get("content") or delta.get("reasoning") or delta.get("tool_calls")
            elif isinstance(choice.get("text"), str):
                text = choice["text"]
            if text:
                self.completion_tokens += 1  # providers stream about one token per delta
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
            native = choice.get("finish_reason")
            if native:
                self.native_finish = native
                self.finish = native
            choice["native_finish_reason"] = native
            choice["finish_reason"] = normalize_finish_reason(native)
            choice.setdefault("logprobs", None)
        fields = {"choices": choices}
        if chunk.get("system_fingerprint") is not None:
            fields["system_fingerprint"] = chunk["system_fingerprint"]
        return self.event(fields)


def _error_choice(kind: str) -> dict:
    choice = {"index": 0, "finish_reason": "error", "native_finish_reason": "error", "logprobs": None}
    if kind == "chat":
        choice["delta"] = {"content": ""}
    else:
        choice["text"] = ""
    return choice


def _json_or_none(payload: bytes):
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _is_empty(choices: list, usage: Usage, kind: str) -> bool:
    first = choices[0] if isinstance(choices[0], dict) else {}
    if kind == "chat":
        message = first.get("message") or {}
        has_output = bool(message.get("content") or message.get("tool_calls") or message.get("reasoning"))
    else:
        has_output = bool(first.get("text"))
    return not has_output and usage.completion_tokens == 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _provider_message(payload: bytes) -> str:
    data = _json_or_none(payload)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:500]
        if isinstance(error, str):
            return error[:500]
    return ""
