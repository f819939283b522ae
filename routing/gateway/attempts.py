"""The attempt loop: the planned attempts in order, each built, held for and handed to a responder.

What an attempt sends is built here, once, before its hold: the request-wide body with the
parameters its endpoint does not take dropped, PDFs parsed where the endpoint cannot read
files, the middle compressed where its context is small, translated into its provider's
dialect. The hold is sized from those bytes (``Bound``), so whatever a plugin or a dialect adds
is paid for; the first attempt's refusal is the request's 402, a later one's skips it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from billing.metering import Bound, meter_open
from openrouter_site.errors import ApiError, PaymentRequired, RateLimited, ServiceUnavailable

from .. import upstream
from ..planning import Attempt
from ..plugins.compression import compress_middle_out, compression_wanted
from ..plugins.file_parser import has_file_parts, parse_files, requested_engine
from ..providers import adapter_for
from ..providers.base import InvalidResponse, TranslationError, UpstreamRequest
from ..tokens import prompt_tokens_upper_bound, sent_prompt_tokens_upper_bound
from .state import CallState

RETRYABLE_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class AttemptFailed(Exception):
    """A provider failed before the first token: try the next endpoint."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, retryable: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Prepared:
    """One attempt, ready to send: its adapter, the upstream request, and the most it can cost."""

    attempt: Attempt
    adapter: object
    request: UpstreamRequest
    bound: Bound


async def attempts_run(call: CallState, responder) -> None:
    """Try the plan's attempts in order until a responder answers; raise the error for all failing."""
    failures: list[AttemptFailed] = []
    refused: set[str] = set()  # models whose provider refused the request itself (a 4xx): other models remain
    files: dict[str, list] = {}  # parsed PDFs, shared by the attempts that need them
    for attempt in call.plan.attempts:
        if call.disconnected:
            return
        if attempt.model.slug in refused:
            continue
        started = time.monotonic()
        try:
            prepared = await attempt_prepare(call, attempt, files)
        except AttemptFailed as failure:
            call.attempt_log(attempt, failure.status, started)
            failures.append(failure)
            continue
        if not await _hold(call, prepared.bound):
            call.attempt_log(attempt, 402, started, reached_provider=False)
            failures.append(AttemptFailed(402, "Insufficient credits for this provider", retryable=True))
            continue
        call.attempt = attempt
        try:
            await responder.serve(prepared, started)
            return
        except AttemptFailed as failure:
            call.attempt_log(attempt, failure.status, started)
            failures.append(failure)
            if not failure.retryable:
                refused.add(attempt.model.slug)
    if not call.disconnected:
        raise all_failed(call, failures)


async def _hold(call: CallState, bound: Bound) -> bool:
    """The first hold opens the meter (a refusal is the request's 402); later ones extend it."""
    if call.meter is None:
        call.meter = await meter_open(
            generation_id=call.id, key=call.key, bound=bound, plugin_cost=call.plugin_cost, site_url=call.site_url()
        )
        return True
    return await call.meter.extend(bound)


# --- what an attempt sends -------------------------------------------------------------------------


async def attempt_prepare(call: CallState, attempt: Attempt, files: dict[str, list]) -> Prepared:
    endpoint = attempt.endpoint
    body = await _attempt_body(call, attempt, files)
    adapter, request = _upstream_request(call, attempt, body)
    prompt_tokens = sent_prompt_tokens_upper_bound(body, request.body, file_tokens=endpoint.context_length)
    if endpoint.context_length > 0:  # a provider takes no longer prompt than its context
        prompt_tokens = min(prompt_tokens, endpoint.context_length)
    n = body.get("n")  # choices the provider will bill (dropped where it does not take ``n``)
    bound = Bound(
        endpoint=endpoint,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=_max_output(call, attempt, prompt_tokens),
        choices=n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1,
        is_byok=attempt.is_byok,
    )
    return Prepared(attempt, adapter, request, bound)


def _max_output(call: CallState, attempt: Attempt, prompt_tokens: int) -> int:
    if call.kind == "embeddings":
        return 0  # a vector: nothing is written, only the input is billed
    cap = attempt.endpoint.max_completion_tokens or attempt.model.max_completion_tokens
    if call.request.max_tokens is not None:
        if call.request.clamp_max_tokens and cap:
            return min(call.request.max_tokens, cap)
        return call.request.max_tokens
    if cap:
        return cap
    return max(attempt.endpoint.context_length - prompt_tokens, 1)


async def _attempt_body(call: CallState, attempt: Attempt, files: dict[str, list]) -> dict:
    """The provider body for one attempt: unsupported parameters dropped, PDFs parsed where the endpoint
    cannot read files, the middle compressed where the context is small."""
    body = call.base_body.copy()
    for parameter in attempt.dropped:
        body.pop(parameter, None)
    cap = attempt.endpoint.max_completion_tokens or attempt.model.max_completion_tokens
    if call.request.clamp_max_tokens and cap and isinstance(body.get("max_tokens"), int) and body["max_tokens"] > cap:
        body["max_tokens"] = cap
    if call.plan.variant == "thinking" and "reasoning" not in call.request.body:
        if "reasoning" not in attempt.endpoint.supported_parameters:
            body.pop("reasoning", None)  # turned on by the variant: dropped like any unsupported parameter
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    if "file" not in attempt.endpoint.input_modalities and has_file_parts(messages):
        if "parsed" not in files:
            result = await asyncio.to_thread(
                parse_files,
                messages,
                engine=requested_engine(call.base_body.get("plugins") or call.request.body.get("plugins")),
                model_supports_files=False,
            )
            files["parsed"] = result.messages
        body["messages"] = messages = files["parsed"]
    if compression_wanted(call.request.body, context_length=attempt.endpoint.context_length):
        max_out = _max_output(call, attempt, prompt_tokens_upper_bound(body))
        budget = max(attempt.endpoint.context_length - max_out, 1)
        body["messages"], _removed = compress_middle_out(messages, max_prompt_tokens=budget)
    return body


def _upstream_request(call: CallState, attempt: Attempt, body: dict) -> tuple[object, UpstreamRequest]:
    endpoint = attempt.endpoint
    stream = call.request.stream
    if call.kind == "completions":
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
        if call.kind == "embeddings":
            request = adapter.embeddings_request(
                body=body, upstream_model=endpoint.upstream_model_id, base_url=attempt.base_url, api_key=attempt.api_key
            )
            return adapter, request
        request = adapter.request(
            body=body, upstream_model=endpoint.upstream_model_id, base_url=attempt.base_url,
            api_key=attempt.api_key, stream=stream,
        )
    except TranslationError as exc:
        raise AttemptFailed(400, f"{endpoint.provider_name} cannot take this request: {exc}", retryable=True) from None
    return adapter, request


async def upstream_open(prepared: Prepared) -> upstream.UpstreamResponse:
    """Send a prepared attempt; a provider's error answer is an ``AttemptFailed``."""
    request = prepared.request
    try:
        response = await upstream.send(request.url, request.headers, request.body)
    except TimeoutError:
        raise AttemptFailed(408, "Provider timed out") from None
    except upstream.UpstreamError as exc:
        raise AttemptFailed(502, f"Provider connection failed: {type(exc).__name__}") from None
    if response.status != 200:
        try:
            payload = await response.read()
        except (upstream.UpstreamError, TimeoutError):
            payload = b""
        response.release()
        message, retry_after = prepared.adapter.parse_error(response.status, payload, response.headers)
        raise AttemptFailed(
            response.status,
            message,
            retry_after=retry_after,
            retryable=response.status in RETRYABLE_STATUSES or response.status >= 500 or prepared.attempt.is_byok,
        )
    return response


async def upstream_json(prepared: Prepared, parse: Callable[[bytes], dict]) -> dict:
    """Send a prepared attempt and read its whole answer through ``parse`` (an adapter's parser);
    a dropped connection or an answer the parser refuses is an ``AttemptFailed`` (502)."""
    response = await upstream_open(prepared)
    try:
        payload = await response.read()
    except (upstream.UpstreamError, TimeoutError):
        raise AttemptFailed(502, "Provider connection dropped") from None
    finally:
        response.release()
    try:
        return parse(payload)
    except InvalidResponse as exc:
        raise AttemptFailed(502, str(exc) or "Provider returned an invalid response") from None


def all_failed(call: CallState, failures: list[AttemptFailed]) -> ApiError:
    """The request's error when no attempt answered, in OpenRouter's shape."""
    previous = [{"provider": a["provider_name"], "status": a["status"], "code": a["status"]} for a in call.attempts]
    metadata = {
        "provider_name": call.attempts[-1]["provider_name"] if call.attempts else None,
        "previous_errors": previous,
    }
    if failures and all(f.status == 429 for f in failures):
        hints = [f.retry_after for f in failures if f.retry_after is not None]
        headers = {"Retry-After": str(int(min(hints) + 0.999))} if hints else {}
        metadata["error_type"] = "rate_limit_exceeded"
        metadata["availability"] = {"code": "capacity_exhausted", "retryable": True}
        return RateLimited(
            f"{call.model_slug} is temporarily rate-limited upstream. Please retry shortly.",
            metadata=metadata,
            headers=headers,
        )
    last = failures[-1] if failures else None
    if failures and all(f.status == 400 for f in failures):  # no dialect could express it: the client's request
        return ApiError(last.message, status=400, metadata={**metadata, "error_type": "invalid_request"})
    if last is not None and not last.retryable and 400 <= last.status < 500 and last.status != 402:
        metadata["error_type"] = "invalid_request"
        return ApiError(last.message, status=last.status, metadata=metadata)
    if last is not None and all(f.status == 402 for f in failures):
        return PaymentRequired(last.message, metadata=metadata, user_id=call.key.account_public_id)
    metadata["error_type"] = "provider_unavailable"
    metadata["availability"] = {"code": "temporarily_unavailable", "retryable": True}
    return ServiceUnavailable(
        f"No provider could serve {call.model_slug} right now: {last.message if last else 'no endpoints'}",
        metadata=metadata,
    )
