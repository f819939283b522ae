"""What routing hands to billing and activity when a request ends.

A record is frozen: the gateway says what happened and ``billing.metering`` builds the record
with the money (``Meter.close``), the settlement writer charges it and ``activity.services.generations_insert``
stores it, and nobody changes it on the way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    id: str
    account_id: int
    api_key_id: int | None
    key_hash: str
    key_window: str | None  # key-limit window of the hold; None when the key has no limit
    created_at: dt.datetime
    held: int = 0  # nano-dollars reserved for the request on the account's balance
    key_held: int | None = None  # ... and on the key's limit, when that differs (BYOK usage in the limit)
    budget_holds: tuple = ()  # guardrail budgets held: (subject, window, nano-dollars held) each
    cost: int = 0  # nano-dollars charged: the real cost, never capped at ``held``
    cost_prompt: int = 0
    cost_completion: int = 0
    upstream_cost: int = 0
    api_type: str = "completions"
    model: str = ""
    requested_model: str = ""
    provider_name: str = ""
    provider_slug: str = ""
    endpoint_id: int | None = None
    router: str | None = None
    upstream_id: str = ""
    tokens_prompt: int = 0
    tokens_completion: int = 0
    tokens_reasoning: int = 0
    tokens_cached: int = 0
    tokens_cache_write: int = 0
    latency_ms: int | None = None
    generation_time_ms: int | None = None
    first_token_ms: int | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    streamed: bool = False
    cancelled: bool = False
    is_byok: bool = False
    http_referer: str = ""
    app_title: str = ""
    user_agent: str = ""
    external_user: str = ""
    session_id: str = ""
    provider_responses: list = field(default_factory=list)
