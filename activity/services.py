"""Writes of activity's own table. The one place generations are inserted.

``generations_insert`` runs inside billing's settlement transaction (the charge and the
generation row commit together); anything that must happen whenever generations are
written (roll-ups) belongs here.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from django.db import connection

from accounts.models import ApiKey

from .models import Generation
from .records import GenerationRecord

# One executemany rather than bulk_create: at hundreds of requests a second, Django's
# per-field SQL compilation was the settlement writer's main cost.
GENERATION_COLUMNS = (
    "id", "account_id", "api_key_id", "created_at", "api_type", "model", "requested_model", "provider_name",
    "provider_slug", "endpoint_id", "upstream_id", "router", "tokens_prompt", "tokens_completion",
    "tokens_reasoning", "tokens_cached", "tokens_cache_write", "cost", "cost_prompt", "cost_completion",
    "upstream_cost", "cache_discount", "is_byok", "latency_ms", "generation_time_ms", "first_token_ms",
    "finish_reason", "native_finish_reason", "streamed", "cancelled", "http_referer", "app_title", "user_agent",
    "external_user", "session_id", "provider_responses",
)


def generations_insert(*, records: Sequence[GenerationRecord]) -> int:
    """Store finished generations (the caller's transaction; ids not stored before). A key deleted
    while its request ran is stored as no key. String columns are clipped to their lengths."""
    if not records:
        return 0
    live_keys = set(
        ApiKey.objects.filter(id__in={r.api_key_id for r in records if r.api_key_id}).values_list("id", flat=True)
    )
    table = Generation._meta.db_table
    placeholders = ", ".join(["%s"] * len(GENERATION_COLUMNS))
    sql = f"INSERT INTO {table} ({', '.join(GENERATION_COLUMNS)}) VALUES ({placeholders})"
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (
            r.id, r.account_id, r.api_key_id if r.api_key_id in live_keys else None, adapt(r.created_at),
            r.api_type[:16], r.model[:160], r.requested_model[:160], r.provider_name[:120], r.provider_slug[:64],
            r.endpoint_id, r.upstream_id[:200], (r.router or None) and r.router[:80], r.tokens_prompt,
            r.tokens_completion, r.tokens_reasoning, r.tokens_cached, r.tokens_cache_write, r.cost, r.cost_prompt,
            r.cost_completion, r.upstream_cost, 0, r.is_byok, r.latency_ms, r.generation_time_ms, r.first_token_ms,
            _clip(r.finish_reason, 32), _clip(None if r.native_finish_reason is None else str(r.native_finish_reason), 64),
            r.streamed, r.cancelled, r.http_referer[:500], r.app_title[:200], r.user_agent[:300],
            r.external_user[:200], r.session_id[:256], orjson.dumps(r.provider_responses).decode(),
        )
        for r in records
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return len(rows)


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]
