"""How an attempt is answered on ``POST /api/v1/embeddings``: one JSON list of vectors.

The same attempt loop, hold and settlement as chat: the hold is sized from the input as sent
(nothing is written, so no output is held for), the charge is the provider's prompt-token count at
the endpoint's price, and the generation record says ``api_type: "embeddings"``.
"""

from __future__ import annotations

import time

from billing.metering import Usage
from billing.money import nanos_to_usd_number

from ..providers.base import count
from ..tokens import estimate_tokens
from .attempts import Prepared, upstream_json
from .state import CallState


class EmbeddingsResponder:
    def __init__(self, call: CallState) -> None:
        self.call = call

    async def __aenter__(self) -> EmbeddingsResponder:
        return self

    async def __aexit__(self, *exc_info) -> None:
        return None

    async def serve(self, prepared: Prepared, started: float) -> None:
        call, attempt, adapter = self.call, prepared.attempt, prepared.adapter
        data = await upstream_json(prepared, adapter.parse_embeddings)
        call.attempt_log(attempt, 200, started)
        answered = time.monotonic()
        usage = Usage(prompt_tokens=_prompt_tokens(data.get("usage"), call.request.body.get("input")))
        charge = await call.meter.charge(prepared.bound, usage, "stop", bill_errors=False)
        call.settle(
            attempt, usage, finish="stop", native=None, charge=charge,
            upstream_id=str(data.get("id") or ""), first_token_at=answered,
        )
        await call.remember(attempt, ttft_ms=(answered - started) * 1000, tokens=0, seconds=answered - started)
        cost = charge.cost
        await call.send_json(
            200,
            {
                "id": call.id,
                "object": "list",
                "data": data["data"],
                "model": attempt.model.slug,
                "provider": attempt.endpoint.provider_name,
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "total_tokens": usage.prompt_tokens,
                    "cost": nanos_to_usd_number(charge.charged),
                    "is_byok": attempt.is_byok,
                    "cost_details": {
                        "upstream_inference_cost": nanos_to_usd_number(cost.total),
                        "upstream_inference_prompt_cost": nanos_to_usd_number(cost.prompt),
                        "upstream_inference_completions_cost": 0,
                    },
                },
            },
        )


def _prompt_tokens(usage, inputs) -> int:
    """The provider's count; a provider that reports none is charged our own count of the input."""
    reported = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else 0
    if reported:
        return reported
    items = [inputs] if isinstance(inputs, str) or (inputs and not isinstance(inputs[0], str | list)) else inputs
    total = 0
    for item in items or ():
        total += estimate_tokens(item) if isinstance(item, str) else len(item)
    return total
