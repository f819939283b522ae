"""The inference hot path: ``POST /api/v1/chat/completions`` and ``/api/v1/completions``.

A plain ASGI handler, mounted by ``openrouter_site.asgi`` in front of Django, so no
view or middleware machinery runs per request. Nothing here touches the
database on the event loop: the key, the catalog and BYOK keys come from
in-process caches (misses are read in a worker thread), the credit hold is one
atomic counter operation (billing.counters), and the charge and the generation
record are handed to the settlement writer after the response is out.

One request:
  read body (413) -> authenticate (401/403) -> validate (400) -> plan the route: model,
  variants, routers, fallbacks, provider preferences, health, stickiness, BYOK (400/404)
  -> free-model rate limit (429) -> plugins (web search) -> hold the worst case (402)
  -> try the attempts in order, translating for providers of other dialects, falling back
  on a failure before the first token -> answer (JSON, or SSE with keep-alive comments, a
  final usage chunk and [DONE]) -> settle the real cost, record stats and stickiness.
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
from billing.byok import byok_fee, byok_request_count_incr
from billing.counters import counters, limit_window
from billing.pricing import Cost, Usage, usage_cost, worst_case_cost
from billing.settlement import settlement_flush, settlement_submit
from openrouter_site import metrics
from openrouter_site.errors import (
    ApiError,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)

from . import upstream
from .planning import Attempt, Plan, plan_request
from .plugins.compression import compress_middle_out, compression_wanted
from .plugins.file_parser import has_file_parts, parse_files, requested_engine
from .plugins.web_search import (
    SearchError,
    annotations_for,
    backend_for_settings,
    inject_results,
    search_query,
    web_options,
)
from .providers import adapter_for
from .providers.base import InvalidResponse, TranslationError, UpstreamRequest
from .ratelimits import free_model_check, free_model_rate_limited
from .request_parsing import InferenceRequest, parse_body, parse_chat, parse_completion, provider_body
from .shapes import generation_id, usage_body, usage_from_provider
from .stats import stats_record
from .sticky import caches_prompts, sticky_set
from .streaming import StreamState, error_choice
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
BYOK_FEE_PERCENT = 5
# A user's own key refused or rate-limited: says nothing about the provider's shared capacity.
BYOK_KEY_FAULTS = frozenset({401, 402, 403, 429})


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
        self.plan: Plan | None = None
        self.attempt: Attempt | None = None
        self.base_body: dict | None = None
        self.parsed_files: list | None = None
        self.search_results: list = []
        self.plugin_cost = 0
        self.held = 0
        self.window: str | None = None
        self.settled = False
        self.attempts: list[dict] = []
        self.disconnected = False
        self.upstream_response: aiohttp.ClientResponse | None = None
        self.lock: asyncio.Lock | None = None
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.streaming_committed = False
        self.upstream_seconds = 0.0  # time spent waiting for providers (metrics: the rest is overhead)

    @property
    def model_slug(self) -> str:
        if self.attempt is not None:
            return self.attempt.model.slug
        return self.request.model if self.request else ""

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
                self._settle(attempt=None, usage=None, finish="error", native=None)

    async def _run(self) -> None:
        if self.scope["method"] != "POST":
            raise MethodNotAllowed(f"{self.scope['method']} is not allowed here; use POST")
        raw = await self._read_body()
        self.key = await self._authenticate()
        body = parse_body(raw)
        if self.kind == "chat":
            self.request = parse_chat(body, settings.DEFAULT_MODEL)
        else:
            self.request = parse_completion(body, settings.DEFAULT_MODEL)
        self.plan = await plan_request(
            body=body,
            requested=self.request.model,
            kind=self.kind,
            account_id=self.key.account_id,
            key_hash=self.key.hash,
            session_id=self._session_id(),
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
        prompt_bound = prompt_tokens_upper_bound(self.base_body)
        self.window = limit_window(self.key.limit_reset) if self.key.limit is not None else None
        await self._hold_for(self.plan.attempts[0], prompt_bound, first=True)
        if self.request.stream:
            await self._serve_stream(prompt_bound)
        else:
            await self._serve_json(prompt_bound)

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

    def _session_id(self) -> str:
        """``session_id`` from the body, else the ``x-session-id`` header."""
        return (self.request.session_id if self.request else "") or self._header(b"x-session-id")

    def _header(self, name: bytes) -> str:
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value else ""

    # --- plugins ----------------------------------------------------------------------------

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

    async def _attempt_body(self, attempt: Attempt, max_out: int) -> dict:
        """The provider body for one attempt: unsupported parameters dropped, PDFs parsed
        where the endpoint cannot read files, the middle compressed where the context is small."""
        body = self.base_body.copy()
        for parameter in attempt.dropped:
            body.pop(parameter, None)
        if self.plan.variant == "thinking" and "reasoning" not in self.request.body:
            if "reasoning" not in attempt.endpoint.supported_parameters:
                body.pop("reasoning", None)  # turned on by the variant: dropped like any unsupported parameter
        messages = body.get("messages")
        if not isinstance(messages, list):
            return body
        if "file" not in attempt.endpoint.input_modalities and has_file_parts(messages):
            if self.parsed_files is None:
                result = await asyncio.to_thread(
                    parse_files,
                    messages,
                    engine=requested_engine(self.base_body.get("plugins") or self.request.body.get("plugins")),
                    model_supports_files=False,
                )
                self.parsed_files = result.messages
            body["messages"] = messages = self.parsed_files
        if compression_wanted(self.request.body, context_length=attempt.endpoint.context_length):
            budget = max(attempt.endpoint.context_length - max_out, 1)
            body["messages"], _removed = compress_middle_out(messages, max_prompt_tokens=budget)
        return body

    # --- credits ---------------------------------------------------------------------------

    def _max_output(self, attempt: Attempt, prompt_bound: int) -> int:
        if self.request.max_tokens is not None:
            return self.request.max_tokens
        cap = attempt.endpoint.max_completion_tokens or attempt.model.max_completion_tokens
        if cap:
            return cap
        return max(attempt.endpoint.context_length - prompt_bound, 1)

    def _worst_case(self, attempt: Attempt, prompt_bound: int, max_out: int) -> int:
        list_price = worst_case_cost(attempt.endpoint, prompt_tokens=prompt_bound, max_completion_tokens=max_out)
        if attempt.is_byok:
            list_price = money.percent_of(list_price, BYOK_FEE_PERCENT) + 1
        return list_price + self.plugin_cost

    async def _hold_for(self, attempt: Attempt, prompt_bound: int, *, first: bool) -> bool:
        """Make the hold cover ``attempt``'s worst case. On the first attempt a refusal is a 402."""
        max_out = self._max_output(attempt, prompt_bound)
        needed = self._worst_case(attempt, prompt_bound, max_out)
        if first or needed > self.held:
            extra = needed if first else needed - self.held
            result = await counters().hold(
                account_id=self.key.account_id,
                amount=max(extra, 0),
                key_hash=self.key.hash,
                key_limit=self.key.limit,
                window=self.window or "all",
            )
            if not result.ok:
                if first:
                    raise self._payment_required(attempt, result.reason, result.available, prompt_bound, max_out)
                return False
            self.held += max(extra, 0)
        return True

    def _payment_required(self, attempt, reason, available, prompt_bound, max_out) -> PaymentRequired:
        endpoint = attempt.endpoint
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
        if prompt_cost + self.plugin_cost > available:
            affordable = money.affordable_tokens(max(available - endpoint.price_request, 0), endpoint.price_prompt)
            return PaymentRequired(
                f"Prompt tokens limit exceeded: {prompt_bound} > {affordable}. To increase, visit {where}",
                metadata=metadata,
                user_id=user_id,
            )
        affordable = money.affordable_tokens(available - prompt_cost - self.plugin_cost, endpoint.price_completion)
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

    async def _charge(self, attempt: Attempt, usage: Usage, finish: str | None, *, bill_errors: bool) -> tuple[Cost, int]:
        """(list-price cost, what the account pays): zero-completion insurance, BYOK fee, plugin fees."""
        cost = usage_cost(attempt.endpoint, usage, training_discount=self.key.training_discount)
        insured = (usage.completion_tokens == 0 and not finish) or (finish == "error" and not bill_errors)
        charged = 0 if insured else cost.total
        if attempt.is_byok and charged:
            count = await byok_request_count_incr(self.key.account_id)
            charged = byok_fee(list_price_cost_nanos=cost.total, requests_this_month=count)
        charged += self.plugin_cost
        if charged > self.held:
            logger.warning("%s: cost %s exceeds hold %s; charging the hold", self.id, charged, self.held)
            charged = self.held
        return cost, charged

    def _settle(
        self,
        *,
        attempt: Attempt | None,
        usage: Usage | None,
        finish: str | None,
        native: str | None,
        cost: Cost | None = None,
        charged: int = 0,
        upstream_id: str = "",
        first_token_at: float | None = None,
    ) -> None:
        """Queue the generation record and its charge; the hold is released when it is written."""
        self.settled = True
        now = time.monotonic()
        cost = cost or Cost(0, 0, 0, 0)
        usage = usage or Usage()
        endpoint = attempt.endpoint if attempt else None
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
            upstream_cost=cost.total if attempt and attempt.is_byok else 0,
            api_type="completions",
            model=self.model_slug,
            requested_model=self.request.model if self.request else "",
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
            streamed=bool(self.request and self.request.stream),
            cancelled=self.disconnected,
            is_byok=bool(attempt and attempt.is_byok),
            http_referer=self._header(b"http-referer") or self._header(b"referer"),
            app_title=self._header(b"x-openrouter-title") or self._header(b"x-title"),
            user_agent=self._header(b"user-agent"),
            external_user=self.request.user if self.request else "",
            session_id=self._session_id(),
            provider_responses=self.attempts,
        )
        settlement_submit(record)

    async def _remember(
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
        if self.plan.sticky_key and (caches_prompts(attempt.endpoint) or self._session_id()):
            try:
                await sticky_set(self.plan.sticky_key, attempt.endpoint.id)
            except Exception:
                logger.warning("could not store sticky routing", exc_info=True)

    # --- upstream attempts -------------------------------------------------------------------

    def _attempt_log(self, attempt: Attempt, status: int, started: float, *, reached_provider: bool = True) -> None:
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

    async def _upstream_request(self, attempt: Attempt, prompt_bound: int) -> tuple[object, UpstreamRequest]:
        endpoint = attempt.endpoint
        body = await self._attempt_body(attempt, self._max_output(attempt, prompt_bound))
        stream = self.request.stream
        if self.kind == "completions":
            adapter = adapter_for("openai")
            payload = {**body, "model": endpoint.upstream_model_id}
            if stream:
                payload["stream_options"] = {"include_usage": True}
            headers = {
                "Authorization": f"Bearer {attempt.api_key}",
                "Content-Type": "application/json",
                "Accept": "text/event-stream" if stream else "application/json",
            }
            return adapter, UpstreamRequest(f"{attempt.base_url}/completions", headers, orjson.dumps(payload))
        adapter = adapter_for(endpoint.dialect)
        try:
            request = adapter.request(
                body=body, upstream_model=endpoint.upstream_model_id, base_url=attempt.base_url,
                api_key=attempt.api_key, stream=stream,
            )
        except TranslationError as exc:
            raise AttemptFailed(400, f"{endpoint.provider_name} cannot take this request: {exc}", retryable=True) from None
        return adapter, request

    async def _open(self, attempt: Attempt, prompt_bound: int):
        adapter, request = await self._upstream_request(attempt, prompt_bound)
        try:
            response = await upstream.send(request.url, request.headers, request.body)
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
            message, retry_after = adapter.parse_error(response.status, payload, response.headers)
            raise AttemptFailed(
                response.status,
                message,
                retry_after=retry_after,
                retryable=response.status in RETRYABLE_STATUSES or response.status >= 500 or attempt.is_byok,
            )
        return adapter, response

    def _all_failed(self, failures: list[AttemptFailed]) -> ApiError:
        previous = [{"provider": a["provider_name"], "status": a["status"], "code": a["status"]} for a in self.attempts]
        metadata = {
            "provider_name": self.attempts[-1]["provider_name"] if self.attempts else None,
            "previous_errors": previous,
        }
        if failures and all(f.status == 429 for f in failures):
            hints = [f.retry_after for f in failures if f.retry_after is not None]
            headers = {"Retry-After": str(int(min(hints) + 0.999))} if hints else {}
            metadata["error_type"] = "rate_limit_exceeded"
            metadata["availability"] = {"code": "capacity_exhausted", "retryable": True}
            return RateLimited(
                f"{self.model_slug} is temporarily rate-limited upstream. Please retry shortly.",
                metadata=metadata,
                headers=headers,
            )
        last = failures[-1] if failures else None
        if last is not None and not last.retryable and 400 <= last.status < 500 and last.status != 402:
            metadata["error_type"] = "invalid_request"
            return ApiError(last.message, status=last.status, metadata=metadata)
        if last is not None and all(f.status == 402 for f in failures):
            return PaymentRequired(last.message, metadata=metadata, user_id=self.key.account_public_id)
        metadata["error_type"] = "provider_unavailable"
        metadata["availability"] = {"code": "temporarily_unavailable", "retryable": True}
        return ServiceUnavailable(
            f"No provider could serve {self.model_slug} right now: {last.message if last else 'no endpoints'}",
            metadata=metadata,
        )

    async def _next_attempt(self, index: int, attempt: Attempt, prompt_bound: int, failures: list) -> bool:
        """Whether ``attempt`` may be tried: its worst case must fit the hold."""
        if index and not await self._hold_for(attempt, prompt_bound, first=False):
            self._attempt_log(attempt, 402, time.monotonic(), reached_provider=False)
            failures.append(AttemptFailed(402, "Insufficient credits for this provider", retryable=True))
            return False
        self.attempt = attempt
        return True

    # --- non-streaming ----------------------------------------------------------------------

    async def _serve_json(self, prompt_bound: int) -> None:
        failures: list[AttemptFailed] = []
        refused: set[str] = set()  # models whose provider refused the request itself (a 4xx): other models remain
        for index, attempt in enumerate(self.plan.attempts):
            if attempt.model.slug in refused:
                continue
            if not await self._next_attempt(index, attempt, prompt_bound, failures):
                continue
            started = time.monotonic()
            try:
                adapter, response = await self._open(attempt, prompt_bound)
                try:
                    payload = await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    raise AttemptFailed(502, "Provider connection dropped") from None
                finally:
                    response.release()
                try:
                    data = adapter.parse_response(payload)
                except InvalidResponse as exc:
                    raise AttemptFailed(502, str(exc) or "Provider returned an invalid response") from None
                choices = data.get("choices")
                if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                    raise AttemptFailed(502, "Provider returned an invalid response")
                usage = usage_from_provider(data.get("usage")) or Usage()
                if _is_empty(choices, usage, self.kind):
                    raise AttemptFailed(502, "Provider returned an empty response")
            except AttemptFailed as failure:
                self._attempt_log(attempt, failure.status, started)
                failures.append(failure)
                if not failure.retryable:
                    refused.add(attempt.model.slug)
                continue
            self._attempt_log(attempt, 200, started)
            answered = time.monotonic()
            first = choices[0] if isinstance(choices[0], dict) else {}
            tool_calls = bool((first.get("message") or {}).get("tool_calls"))
            native = first.get("finish_reason")
            finish = adapter.normalize_finish_reason(native, tool_calls=tool_calls) or "stop"
            cost, charged = await self._charge(attempt, usage, finish, bill_errors=False)
            self._settle(
                attempt=attempt, usage=usage, finish=finish, native=native, cost=cost, charged=charged,
                upstream_id=str(data.get("id") or ""), first_token_at=answered,
            )
            await self._remember(
                attempt, ttft_ms=(answered - started) * 1000, tokens=usage.completion_tokens, seconds=answered - started,
                tool_calls=_valid_tool_calls(first.get("message")),
            )
            await self._send_json(200, self._result_body(data, choices, attempt, adapter, usage, cost, charged))
            return
        raise self._all_failed(failures)

    def _result_body(self, data: dict, choices: list, attempt: Attempt, adapter, usage: Usage, cost: Cost, charged: int) -> dict:
        strip_reasoning = _reasoning_excluded(self.request.body)
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            native = choice.get("finish_reason")
            message = choice.get("message")
            tool_calls = isinstance(message, dict) and bool(message.get("tool_calls"))
            choice["native_finish_reason"] = native
            choice["finish_reason"] = adapter.normalize_finish_reason(native, tool_calls=tool_calls)
            choice.setdefault("logprobs", None)
            if isinstance(message, dict):
                message.setdefault("refusal", None)
                if strip_reasoning:
                    message.pop("reasoning_details", None)
                    message["reasoning"] = None
                else:
                    message.setdefault("reasoning", None)
                if self.search_results and isinstance(message.get("content"), str):
                    message["annotations"] = annotations_for(message["content"], self.search_results)
        return {
            "id": self.id,
            "provider": attempt.endpoint.provider_name,
            "model": attempt.model.slug,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "system_fingerprint": data.get("system_fingerprint"),
            "choices": choices,
            "usage": usage_body(usage, cost, charged, is_byok=attempt.is_byok),
        }

    # --- streaming ------------------------------------------------------------------------------

    async def _serve_stream(self, prompt_bound: int) -> None:
        self.lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self.keepalive_handle = loop.call_later(settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due)
        watcher = loop.create_task(self._watch_disconnect())
        try:
            failures: list[AttemptFailed] = []
            refused: set[str] = set()  # as in _serve_json
            for index, attempt in enumerate(self.plan.attempts):
                if self.disconnected:
                    return
                if attempt.model.slug in refused:
                    continue
                if not await self._next_attempt(index, attempt, prompt_bound, failures):
                    continue
                started = time.monotonic()
                try:
                    await self._stream_from(attempt, prompt_bound, started)
                    return
                except AttemptFailed as failure:
                    self._attempt_log(attempt, failure.status, started)
                    failures.append(failure)
                    if not failure.retryable:
                        refused.add(attempt.model.slug)
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
        loop = asyncio.get_running_loop()
        loop.create_task(self._send_keepalive())
        self.keepalive_handle = loop.call_later(settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due)

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

    async def _stream_from(self, attempt: Attempt, prompt_bound: int, started: float) -> None:
        adapter, response = await self._open(attempt, prompt_bound)
        if self.disconnected:  # the client left while the provider was answering: do not read it
            response.close()
            raise ClientGone
        self.upstream_response = response
        translator = adapter.stream_translator()
        state = StreamState(
            generation_id=self.id,
            model=attempt.model.slug,
            provider=attempt.endpoint.provider_name,
            kind=self.kind,
            adapter=adapter,
            strip_reasoning=_reasoning_excluded(self.request.body),
            collect_text=bool(self.search_results),
        )
        failed = False
        try:
            try:
                async for data in response.content.iter_any():
                    out = state.feed(translator.feed(data))
                    if out:
                        if not self.streaming_committed:
                            self._attempt_log(attempt, 200, started)
                            await self._commit_stream()
                        await self.send({"type": "http.response.body", "body": out, "more_body": True})
                    if translator.done:
                        break
                if not translator.done:
                    out = state.feed(translator.end())
                    if out and self.streaming_committed:
                        await self.send({"type": "http.response.body", "body": out, "more_body": True})
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if not self.streaming_committed and not self.disconnected:
                    raise AttemptFailed(502, f"Provider stream failed: {type(exc).__name__}") from None
                failed = not self.disconnected
        finally:
            if self.disconnected:
                response.close()  # drops the connection: the provider stops generating
            else:
                response.release()
            self.upstream_response = None
        if not self.streaming_committed and not self.disconnected:
            message = translator.error or "Provider returned an empty stream"
            raise AttemptFailed(502, message)
        if self.disconnected:
            await self._settle_stream(attempt, state, finish=state.finish or "stop", bill_errors=True)
            return
        failed = failed or translator.failed or not translator.done
        await self._finish_stream(attempt, state, failed=failed, started=started)

    async def _commit_stream(self) -> None:
        async with self.lock:
            self.streaming_committed = True
            if self.keepalive_handle is not None:
                self.keepalive_handle.cancel()
            await self._start_sse()

    async def _settle_stream(self, attempt: Attempt, state: StreamState, *, finish: str, bill_errors: bool):
        usage = state.tail_usage(estimate_prompt_tokens(self.request.body))
        cost, charged = await self._charge(attempt, usage, finish, bill_errors=bill_errors)
        self._settle(
            attempt=attempt, usage=usage, finish=finish, native=state.native_finish, cost=cost, charged=charged,
            upstream_id=state.upstream_id, first_token_at=state.first_token_at,
        )
        return usage, cost, charged

    async def _finish_stream(self, attempt: Attempt, state: StreamState, *, failed: bool, started: float) -> None:
        tail = b""
        if failed:
            tail += state.event(
                {
                    "error": {
                        "code": 502,
                        "message": "Provider disconnected mid-stream",
                        "metadata": {"error_type": "provider_unavailable", "provider_name": attempt.endpoint.provider_name},
                    },
                    "choices": [error_choice(self.kind)],
                }
            )
            usage, cost, charged = await self._settle_stream(attempt, state, finish="error", bill_errors=True)
        else:
            usage, cost, charged = await self._settle_stream(attempt, state, finish=state.finish or "stop", bill_errors=False)
            now = time.monotonic()
            ttft = ((state.first_token_at or now) - started) * 1000
            await self._remember(
                attempt, ttft_ms=ttft, tokens=usage.completion_tokens, seconds=now - (state.first_token_at or started),
                tool_calls=state.tool_calls,
            )
        if self.search_results and not failed:
            annotations = annotations_for("".join(state.text), self.search_results)
            delta = {"role": "assistant", "content": "", "annotations": annotations}
            choice = {"index": 0, "delta": delta, "finish_reason": None, "native_finish_reason": None, "logprobs": None}
            tail += state.event({"choices": [choice]})
        tail += state.event({"choices": [], "usage": usage_body(usage, cost, charged, is_byok=attempt.is_byok)})
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
        self.streaming_committed = True  # no more keep-alive comments
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": self.model_slug,
            "provider": None,
            "error": exc.body()["error"],
            "choices": [error_choice(self.kind)],
        }
        try:
            await self.send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE, "more_body": False}
            )
        except Exception:
            logger.debug("client gone before the error could be sent", exc_info=True)


def _reasoning_excluded(body: dict) -> bool:
    reasoning = body.get("reasoning")
    return (isinstance(reasoning, dict) and reasoning.get("exclude") is True) or body.get("include_reasoning") is False


def _valid_tool_calls(message) -> bool:
    """Whether an answer holds tool calls whose arguments are JSON objects."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if not calls or not isinstance(calls, list):
        return False
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else None
        except orjson.JSONDecodeError:
            return False
        if not isinstance(parsed, dict):
            return False
    return True


def _is_empty(choices: list, usage: Usage, kind: str) -> bool:
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    if kind == "chat":
        message = first.get("message") or {}
        has_output = bool(message.get("content") or message.get("tool_calls") or message.get("reasoning"))
    else:
        has_output = bool(first.get("text"))
    return not has_output and usage.completion_tokens == 0

