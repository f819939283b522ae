"""Writes of activity's own tables: the one place generations are inserted, and the usage roll-ups.

``generations_insert`` runs inside billing's settlement transaction (the charge and the
generation row commit together) and adds each batch to the roll-ups there: ``rollups_apply``
adds the batch's sums to the hourly and daily roll-up rows with one ``INSERT ... ON CONFLICT DO
UPDATE`` per table (PostgreSQL and SQLite both speak it), in a fixed key order so two batches
never deadlock (option (a) of issue 8: exact by construction, no second pass).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson
from django.db import connection, transaction

from accounts.models import ApiKey
from openrouter_site.sql import ids_present, rows_insert

from .models import Generation, GenerationContent, UsageDaily, UsageHourly
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
    live_keys = ids_present(table=ApiKey._meta.db_table, column="id", ids=sorted({r.api_key_id for r in records if r.api_key_id}))
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
    rows_insert(table=Generation._meta.db_table, columns=GENERATION_COLUMNS, rows=rows)
    rollups_apply(rows=records, live_keys=live_keys)  # the same transaction: roll-ups stay exact
    return len(rows)


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


SUMS = ("requests", "cost", "byok_cost", "tokens_prompt", "tokens_completion", "tokens_reasoning", "tokens_cached", "errors")
KEYS = ("account_id", "bucket", "model", "provider_name", "api_key_id", "endpoint_id")


class GenerationLike(Protocol):
    account_id: int
    api_key_id: int | None
    created_at: dt.datetime
    model: str
    provider_name: str
    cost: int
    upstream_cost: int
    is_byok: bool
    tokens_prompt: int
    tokens_completion: int
    tokens_reasoning: int
    tokens_cached: int
    finish_reason: str | None
    endpoint_id: int | None


def is_error(finish_reason: str | None) -> bool:
    return finish_reason == "error"


def rollup_key(*, account_id: int, created_at: dt.datetime, model: str, provider_name: str, api_key_id: int | None,
               endpoint_id: int | None, day: bool) -> tuple:
    created_at = created_at.astimezone(dt.UTC)
    bucket = created_at.replace(minute=0, second=0, microsecond=0)
    if day:
        bucket = bucket.replace(hour=0)
    return (account_id, bucket, model[:160], provider_name[:120], api_key_id or 0, endpoint_id or 0)


def rollups_apply(*, rows: Iterable[GenerationLike], live_keys: set[int] | None = None) -> int:
    """Add freshly inserted generations to the roll-ups. Call inside the inserting transaction.

    ``live_keys``: the key ids the insert kept (others were stored as NULL, so they roll up as 0).
    Returns how many roll-up rows were touched.
    """
    hourly: dict[tuple, list[int]] = {}
    daily: dict[tuple, list[int]] = {}
    for r in rows:
        key_id = r.api_key_id if r.api_key_id and (live_keys is None or r.api_key_id in live_keys) else 0
        sums = (
            1, r.cost, r.upstream_cost if r.is_byok else 0, r.tokens_prompt, r.tokens_completion, r.tokens_reasoning,
            r.tokens_cached, 1 if is_error(r.finish_reason) else 0,
        )
        for target, day in ((hourly, False), (daily, True)):
            key = rollup_key(account_id=r.account_id, created_at=r.created_at, model=r.model,
                             provider_name=r.provider_name, api_key_id=key_id, endpoint_id=r.endpoint_id, day=day)
            acc = target.get(key)
            if acc is None:
                target[key] = list(sums)
            else:
                for i, value in enumerate(sums):
                    acc[i] += value
    _upsert(UsageHourly._meta.db_table, hourly)
    _upsert(UsageDaily._meta.db_table, daily)
    return len(hourly) + len(daily)


def _upsert(table: str, sums: dict[tuple, list[int]]) -> None:
    """Add ``sums`` to the roll-up rows, inserting the missing ones, in a fixed key order: one
    ``INSERT ... VALUES ... ON CONFLICT DO UPDATE`` (keys are unique, so no row is hit twice).
    A settlement batch is usually a row or two per table: scalar parameters, no arrays to dump."""
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUMS)
    ordered = sorted(sums.items(), key=lambda item: (item[0][0], item[0][1], *item[0][2:]))
    adapt = connection.ops.adapt_datetimefield_value
    rows_insert(
        table=table, columns=(*KEYS, *SUMS), rows=[(key[0], adapt(key[1]), *key[2:], *values) for key, values in ordered],
        suffix=f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET {updates}",
    )


def rollups_rebuild(*, account_id: int) -> int:
    """Recompute one account's roll-ups from its generations (repair after a failed check)."""
    with transaction.atomic():
        UsageHourly.objects.filter(account_id=account_id).delete()
        UsageDaily.objects.filter(account_id=account_id).delete()
        fields = ("account_id", "api_key_id", "created_at", "model", "provider_name", "cost", "upstream_cost",
                  "is_byok", "tokens_prompt", "tokens_completion", "tokens_reasoning", "tokens_cached", "finish_reason",
                  "endpoint_id")
        touched = 0
        batch = []
        for row in Generation.objects.filter(account_id=account_id).only(*[f for f in fields if f != "account_id"],
                                                                          "account").iterator(chunk_size=5000):
            batch.append(row)
            if len(batch) >= 5000:
                touched += rollups_apply(rows=batch)
                batch = []
        touched += rollups_apply(rows=batch)
    return touched


SEED_COLUMNS = (
    "id", "account_id", "api_key_id", "created_at", "api_type", "model", "requested_model", "provider_name",
    "provider_slug", "endpoint_id", "upstream_id", "tokens_prompt", "tokens_completion", "tokens_reasoning",
    "tokens_cached", "tokens_cache_write", "cost", "cost_prompt", "cost_completion", "upstream_cost", "cache_discount",
    "is_byok", "latency_ms", "generation_time_ms", "first_token_ms", "finish_reason", "streamed", "cancelled",
    "http_referer", "app_title", "user_agent", "external_user", "session_id", "provider_responses",
)


def generations_seed(*, records: list) -> int:
    """Bulk-load synthetic generations (``manage.py seed_activity``) and roll them up through
    ``rollups_apply``, in one transaction. PostgreSQL gets COPY; other databases executemany.
    Records are ``activity.records.GenerationRecord``; no ledger entry is written (test data)."""
    table = Generation._meta.db_table
    rows = [
        (
            r.id, r.account_id, r.api_key_id, r.created_at, r.api_type, r.model, r.requested_model, r.provider_name,
            r.provider_slug, r.endpoint_id, "", r.tokens_prompt, r.tokens_completion, r.tokens_reasoning,
            r.tokens_cached, 0, r.cost, r.cost_prompt, r.cost_completion, r.upstream_cost, 0, r.is_byok,
            r.latency_ms, r.generation_time_ms, r.first_token_ms, r.finish_reason, r.streamed, r.cancelled,
            "", r.app_title, "", "", "", "[]",
        )
        for r in records
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({', '.join(SEED_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                adapt = connection.ops.adapt_datetimefield_value
                placeholders = ", ".join(["%s"] * len(SEED_COLUMNS))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(SEED_COLUMNS)}) VALUES ({placeholders})",
                    [(*row[:3], adapt(row[3]), *row[4:]) for row in rows],
                )
        rollups_apply(rows=records)
    return len(rows)


def generation_contents_insert(*, rows: list, retention_days: int) -> int:
    """Store the encrypted content of generations (``[(ContentItem, token)]``); an id stored already is kept."""
    objects = [
        GenerationContent(
            generation_id=item.generation_id, account_id=item.account_id, created_at=item.created_at,
            expires_at=item.created_at + dt.timedelta(days=retention_days), encrypted=token,
        )
        for item, token in rows
    ]
    return len(GenerationContent.objects.bulk_create(objects, ignore_conflicts=True))


def generation_contents_purge(*, now) -> int:
    """Delete every stored content past its retention; returns how many."""
    deleted, _ = GenerationContent.objects.filter(expires_at__lte=now).delete()
    return deleted
