"""Reads about generations and usage. Every query is scoped to an account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from django.db.models import Q, Sum

from .models import Generation, UsageDaily


@dataclass(frozen=True)
class KeyUsage:
    total: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    last_used: dt.datetime | None = None


def _window_starts(now: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - dt.timedelta(days=day.weekday())
    month = day.replace(day=1)
    return day, week, month


def key_usage_by_key(*, key_ids: list[int], now: dt.datetime | None = None) -> dict[int, KeyUsage]:
    """Spend of each key (nano-dollars): lifetime, this UTC day, this Monday-based week, this month.

    Read from the daily roll-ups (every window starts at a UTC midnight, so they are exact), and the
    last use from the newest generation through the (api_key, created_at) index.
    """
    if not key_ids:
        return {}
    day, week, month = _window_starts(now or dt.datetime.now(dt.UTC))
    rows = (
        UsageDaily.objects.filter(api_key_id__in=key_ids)
        .values("api_key_id")
        .annotate(
            total=Sum("cost"),
            daily=Sum("cost", filter=Q(bucket__gte=day)),
            weekly=Sum("cost", filter=Q(bucket__gte=week)),
            monthly=Sum("cost", filter=Q(bucket__gte=month)),
        )
    )
    usage = {
        row["api_key_id"]: KeyUsage(
            total=row["total"] or 0,
            daily=row["daily"] or 0,
            weekly=row["weekly"] or 0,
            monthly=row["monthly"] or 0,
        )
        for row in rows
    }
    for key_id in usage:
        last = Generation.objects.filter(api_key_id=key_id).order_by("-created_at").values_list("created_at", flat=True).first()
        usage[key_id] = replace(usage[key_id], last_used=last)
    return usage


def free_requests_today(*, account_id: int, now: dt.datetime | None = None) -> int:
    """Requests the account made to ``:free`` model variants since UTC midnight."""
    day, _, _ = _window_starts(now or dt.datetime.now(dt.UTC))
    return Generation.objects.filter(account_id=account_id, created_at__gte=day, model__endswith=":free").count()


def generation_get(*, account_id: int, generation_id: str) -> Generation | None:
    return Generation.objects.filter(account_id=account_id, id=generation_id).select_related("api_key").first()


def activity_by_day(*, account_id: int, since: dt.date, until: dt.date, key_id: int | None = None) -> list[dict]:
    """Per UTC day, model and provider endpoint: spend, requests and tokens (from the daily roll-ups)."""
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    rows = UsageDaily.objects.filter(account_id=account_id, bucket__gte=start, bucket__lt=end)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    return [
        {**row, "day": row["bucket"].date()}
        for row in rows.values("bucket", "model", "provider_name", "endpoint_id")
        .annotate(
            usage=Sum("cost"),
            byok_usage=Sum("byok_cost"),
            requests=Sum("requests"),
            prompt_tokens=Sum("tokens_prompt"),
            completion_tokens=Sum("tokens_completion"),
            reasoning_tokens=Sum("tokens_reasoning"),
        )
        .order_by("-bucket", "model", "provider_name")
    ]
