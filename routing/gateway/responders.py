"""How an attempt is answered on the OpenAI-shaped surfaces: one JSON body, or an SSE stream.

A responder is entered around the attempt loop (``async with``) and ``serve``s one prepared
attempt at a time: it sends it, answers the client, charges the real cost through the meter
and closes it. Raising ``AttemptFailed`` before anything reached the client hands the request
to the next attempt.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from django.conf import settings

from billing.metering import Charge, Usage

from .. import upstream
from ..plugins.web_search import annotations_for
from ..shapes import usage_body, usage_from_provider
from ..streaming import StreamState, error_choice
from ..tokens import estimate_prompt_tokens
from .attempts import AttemptFailed, Prepared, upstream_json, upstream_open
from .state import DONE, CallState, ClientGone

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": OPENROUTER PROCESSING\n\n"


class JsonResponder:
    def __init__(self, call: CallState) -> None:
        self.call = call

    async def __aenter__(self) -> JsonResponder:
        return self

    async def __aexit__(self, *exc_info) -> None:
        return None

    async def serve(self, prepared: Prepared, started: float) -> None:
        call, attempt, adapter = self.call, prepared.attempt, prepared.adapter
        data = await upstream_json(prepared, adapter.parse_response)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise AttemptFailed(502, "Provider returned an invalid response")
        usage = usage_from_provider(data.get("usage")) or Usage()
        if _is_empty(choices, usage, call.kind):
            raise AttemptFailed(502, "Provider returned an empty response")
        call.attempt_log(attempt, 200, started)
        answered = time.monotonic()
        first = choices[0]
        tool_calls = bool((first.get("message") or {}).get("tool_calls"))
        native = first.get("finish_reason")
        finish = adapter.normalize_finish_reason(native, tool_calls=tool_calls) or "stop"
        charge = await call.meter.charge(prepared.bound, usage, finish, bill_errors=False)
        call.settle(
            attempt, usage, finish=finish, native=native, charge=charge,
            upstream_id=str(data.get("id") or ""), first_token_at=answered,
        )
        try:
            await call.send_json(200, self._body(data, choices, prepared, usage, charge))
        finally:  # stats and stickiness after the answer is out: they are not the client's wait
            await call.remember(
                attempt, ttft_ms=(answered - started) * 1000, tokens=usage.completion_tokens,
                seconds=answered - started, tool_calls=_valid_tool_calls(first.get("message")),
            )

    def _body(self, data: dict, choices: list, prepared: Prepared, usage: Usage, charge: Charge) -> dict:
        call, attempt, adapter = self.call, prepared.attempt, prepared.adapter
        strip_reasoning = reasoning_excluded(call.request.body)
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
                if call.search_results and isinstance(message.get("content"), str):
                    message["annotations"] = annotations_for(message["content"], call.search_results)
        return {
            "id": call.id,
            "provider": attempt.endpoint.provider_name,
            "model": attempt.model.slug,
            "object": "chat.completion" if call.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "system_fingerprint": data.get("system_fingerprint"),
            "choices": choices,
            "usage": usage_body(usage, charge.cost, charge.charged, is_byok=attempt.is_byok),
        }


class SseResponder:
    """Keep-alive comments until the first token, a watch for the client leaving, then the events.

    Another API's stream (Anthropic Messages, OpenAI Responses) is a subclass with its own
    ``state_class`` or ``stream_state`` (how chunks are rendered), ``keepalive`` bytes and ``stream_tail``."""

    state_class = StreamState
    keepalive = KEEPALIVE

    def __init__(self, call: CallState) -> None:
        self.call = call
        self.lock = asyncio.Lock()
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.watcher: asyncio.Task | None = None
        self.upstream_response: upstream.UpstreamResponse | None = None

    async def __aenter__(self) -> SseResponder:
        loop = asyncio.get_running_loop()
        self.keepalive_handle = loop.call_later(settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due)
        self.watcher = loop.create_task(self._watch_disconnect())
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.watcher.cancel()
        if self.keepalive_handle is not None:
            self.keepalive_handle.cancel()

    # --- before the first token ------------------------------------------------------------------

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.call.receive()
            if message["type"] == "http.disconnect":
                self.call.disconnected = True
                if self.upstream_response is not None:
                    self.upstream_response.close()
                return

    def _quiet(self) -> bool:
        call = self.call
        return call.streaming_committed or (call.meter is not None and call.meter.closed) or call.disconnected

    def _keepalive_due(self) -> None:
        if self._quiet():
            return
        loop = asyncio.get_running_loop()
        loop.create_task(self._send_keepalive())
        self.keepalive_handle = loop.call_later(settings.GATEWAY_KEEPALIVE_SECONDS, self._keepalive_due)

    async def _send_keepalive(self) -> None:
        async with self.lock:
            if self._quiet():
                return
            await self._start()
            await self.call.send({"type": "http.response.body", "body": self.keepalive, "more_body": True})

    async def _start(self) -> None:
        call = self.call
        if not call.response_started:
            call.response_started = True
            await call.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-generation-id", call.id.encode())],
                }
            )

    async def _commit(self) -> None:
        async with self.lock:
            self.call.streaming_committed = True
            if self.keepalive_handle is not None:
                self.keepalive_handle.cancel()
            await self._start()

    # --- one attempt -------------------------------------------------------------------------------

    def stream_state(self, **fields) -> StreamState:
        """What turns the provider's chunks into this surface's events (``state_class``: OpenRouter's chunks here)."""
        return self.state_class(**fields)

    async def serve(self, prepared: Prepared, started: float) -> None:
        call, attempt, adapter = self.call, prepared.attempt, prepared.adapter
        response = await upstream_open(prepared)
        if call.disconnected:  # the client left while the provider was answering: do not read it
            response.close()
            raise ClientGone
        self.upstream_response = response
        translator = adapter.stream_translator()
        state = self.stream_state(
            generation_id=call.id,
            model=attempt.model.slug,
            provider=attempt.endpoint.provider_name,
            kind=call.kind,
            adapter=adapter,
            strip_reasoning=reasoning_excluded(call.request.body),
            collect_text=bool(call.search_results),
        )
        failed = False
        try:
            try:
                async for data in response:
                    out = state.feed(translator.feed(data))
                    if out:
                        if not call.streaming_committed:
                            call.attempt_log(attempt, 200, started)
                            await self._commit()
                        await call.send({"type": "http.response.body", "body": out, "more_body": True})
                    if translator.done:
                        break
                if not translator.done:
                    out = state.feed(translator.end())
                    if out and call.streaming_committed:
                        await call.send({"type": "http.response.body", "body": out, "more_body": True})
            except (upstream.UpstreamError, TimeoutError, ConnectionError) as exc:
                if not call.streaming_committed and not call.disconnected:
                    raise AttemptFailed(502, f"Provider stream failed: {type(exc).__name__}") from None
                failed = not call.disconnected
        finally:
            if call.disconnected:
                response.close()  # drops the connection: the provider stops generating
            else:
                response.release()
            self.upstream_response = None
        if not call.streaming_committed and not call.disconnected:
            raise AttemptFailed(502, translator.error or "Provider returned an empty stream")
        if call.disconnected:
            await self._settle(prepared, state, finish=state.finish or "stop", bill_errors=True)
            return
        await self._finish(prepared, state, failed=failed or translator.failed or not translator.done, started=started)

    async def _settle(self, prepared: Prepared, state: StreamState, *, finish: str, bill_errors: bool):
        call = self.call
        usage = state.tail_usage(estimate_prompt_tokens(call.request.body))
        charge = await call.meter.charge(prepared.bound, usage, finish, bill_errors=bill_errors)
        call.settle(
            prepared.attempt, usage, finish=finish, native=state.native_finish, charge=charge,
            upstream_id=state.upstream_id, first_token_at=state.first_token_at,
        )
        return usage, charge

    async def _finish(self, prepared: Prepared, state: StreamState, *, failed: bool, started: float) -> None:
        call, attempt = self.call, prepared.attempt
        if failed:
            usage, charge = await self._settle(prepared, state, finish="error", bill_errors=True)
        else:
            usage, charge = await self._settle(prepared, state, finish=state.finish or "stop", bill_errors=False)
        tail = self.stream_tail(prepared, state, usage, charge, failed=failed)
        now = time.monotonic()
        try:
            await call.send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            if not failed:  # stats and stickiness after the stream is out: they are not the client's wait
                await call.remember(
                    attempt, ttft_ms=((state.first_token_at or now) - started) * 1000, tokens=usage.completion_tokens,
                    seconds=now - (state.first_token_at or started), tool_calls=state.tool_calls,
                )

    def stream_tail(self, prepared: Prepared, state: StreamState, usage: Usage, charge: Charge, *, failed: bool) -> bytes:
        """The events that end a served stream: an error chunk if it broke, the citations, usage and cost, [DONE]."""
        call, attempt = self.call, prepared.attempt
        tail = b""
        if failed:
            tail += state.event(
                {
                    "error": {
                        "code": 502,
                        "message": "Provider disconnected mid-stream",
                        "metadata": {"error_type": "provider_unavailable", "provider_name": attempt.endpoint.provider_name},
                    },
                    "choices": [error_choice(call.kind)],
                }
            )
        if call.search_results and not failed:
            annotations = annotations_for("".join(state.text), call.search_results)
            delta = {"role": "assistant", "content": "", "annotations": annotations}
            choice = {"index": 0, "delta": delta, "finish_reason": None, "native_finish_reason": None, "logprobs": None}
            tail += state.event({"choices": [choice]})
        tail += state.event({"choices": [], "usage": usage_body(usage, charge.cost, charge.charged, is_byok=attempt.is_byok)})
        return tail + DONE


def reasoning_excluded(body: dict) -> bool:
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
