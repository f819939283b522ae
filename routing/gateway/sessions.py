"""A gateway call for a signed-in browser session (the chatroom's socket), on the API's own path.

``session_call_run`` runs the same ``Call`` as ``POST /api/v1/chat/completions`` from the parsed body
on (``Call.serve``: validation, planning, the free-model limit, the attempts with their fallbacks and
credit holds, the SSE responder, settlement through ``billing.metering`` and the generation record).
Only the two HTTP ends differ: the caller is an account's session (``accounts.keycache.session_key_info``)
instead of a bearer key, and the ASGI ``send``/``receive`` pair is a shim: the SSE events go to an
``EventSink`` (awaited, so a slow consumer slows the upstream read: back-pressure), and setting ``stop``
is the client disconnecting (the upstream request is closed; delivered tokens are charged).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from accounts.keycache import KeyInfo

from .app import SURFACES
from .call import Call


class EventSink(Protocol):
    async def events(self, payloads: list[bytes]) -> None:
        """Each ``data:`` payload of one SSE write (chunk JSON objects, ``[DONE]`` left out)."""

    async def error(self, status: int, body: bytes) -> None:
        """The call failed before its stream started: the API's error envelope (JSON bytes)."""


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    generation_id: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    charged: int  # nano-dollars the account paid (0 when nothing was charged)
    stopped: bool  # the client stopped it (the upstream request was cancelled)


class SessionCall(Call):
    """A ``Call`` whose caller is already authenticated and whose ASGI ends are a sink and a stop event."""

    def __init__(self, *, key: KeyInfo, body: dict, sink: EventSink, stop: asyncio.Event, headers: dict[str, str]):
        scope = {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/chat/completions",
            "headers": [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers.items()],
        }
        super().__init__(scope, self._receive, self._send, SURFACES["chat"])
        self.key = key
        self.body = body
        self.sink = sink
        self.stop = stop
        self.status = 200
        self.outcome_usage = None
        self.outcome_charge = None

    async def _run(self) -> None:
        await self.serve(self.body)

    def settle(self, attempt, usage, *, charge, **kwargs) -> None:
        self.outcome_usage = usage
        self.outcome_charge = charge
        super().settle(attempt, usage, charge=charge, **kwargs)

    # --- the ASGI shim ------------------------------------------------------------------------------

    async def _receive(self) -> dict:
        await self.stop.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        body = message.get("body", b"")
        if self.status != 200:
            await self.sink.error(self.status, body)
            return
        payloads = [
            event[6:]
            for event in body.split(b"\n\n")
            if event.startswith(b"data: ") and event != b"data: [DONE]"
        ]
        if payloads:
            await self.sink.events(payloads)

    def outcome(self) -> SessionOutcome:
        usage, charge = self.outcome_usage, self.outcome_charge
        attempt = self.attempt
        return SessionOutcome(
            generation_id=self.id,
            model=self.model_slug,
            provider=attempt.endpoint.provider_name if attempt is not None else "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            charged=charge.charged if charge is not None else 0,
            stopped=self.disconnected or self.stop.is_set(),
        )


async def session_call_run(
    *, key: KeyInfo, body: dict, sink: EventSink, stop: asyncio.Event, headers: dict[str, str]
) -> SessionOutcome:
    """One streamed chat completion for a session: events and errors go to ``sink``; returns what it cost."""
    call = SessionCall(key=key, body={**body, "stream": True}, sink=sink, stop=stop, headers=headers)
    await call.run()
    return call.outcome()
