"""Reads about generations and usage. Every query is scoped to an account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncDate

from .models import Generation


@dataclass(frozen=True)
class KeyUsage:
    total: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    last_used: dt.datetime | None = None
    # BYOK usage: the list price of what the account's own provider keys paid for (``upstream_cost``).
    byok_total: int = 0
    byok_daily: int = 0
    byok_weekly: int = 0
    byok_monthly: int = 0


def _window_starts(now: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - dt.timedelta(days=day.weekday())
    month = day.replace(day=1)
    return day, week, month


def key_usage_by_key(*, key_ids: list[int], now: dt.datetime | None = None) -> dict[int, KeyUsage]:
    """Spend of each key (nano-dollars), and its BYOK usage: lifetime, this UTC day, this Monday-based
    week, this month."""
    if not key_ids:
        return {}
    day, week, month = _window_starts(now or dt.datetime.now(dt.UTC))
    rows = (
        Generation.objects.filter(api_key_id__in=key_ids)
        .values("api_key_id")
        .annotate(
            total=Sum("cost"),
            daily=Sum("cost", filter=Q(created_at__gte=day)),
            weekly=Sum("cost", filter=Q(created_at__gte=week)),
            monthly=Sum("cost", filter=Q(created_at__gte=month)),
            last_used=Max("created_at"),
            byok_total=Sum("upstream_cost", filter=Q(is_byok=True)),
            byok_daily=Sum("upstream_cost", filter=Q(is_byok=True, created_at__gte=day)),
            byok_weekly=Sum("upstream_cost", filter=Q(is_byok=True, created_at__gte=week)),
            byok_monthly=Sum("upstream_cost", filter=Q(is_byok=True, created_at__gte=month)),
        )
    )
    return {
        row["api_key_id"]: KeyUsage(
            total=row["total"] or 0,
            daily=row["daily"] or 0,
            weekly=row["weekly"] or 0,
            monthly=row["monthly"] or 0,
            last_used=row["last_used"],
            byok_total=row["byok_total"] or 0,
            byok_daily=row["byok_daily"] or 0,
            byok_weekly=row["byok_weekly"] or 0,
            byok_monthly=row["byok_monthly"] or 0,
        )
        for row in rows
    }


def free_requests_today(*, account_id: int, now: dt.datetime | None = None) -> int:
    """Requests the account made to ``:free`` model variants since UTC midnight."""
    day, _, _ = _window_starts(now or dt.datetime.now(dt.UTC))
    return Generation.objects.filter(account_id=account_id, created_at__gte=day, model__endswith=":free").count()


def generation_get(*, account_id: int, generation_id: str) -> Generation | None:
    return Generation.objects.filter(account_id=account_id, id=generation_id).select_related("api_key").first()


def activity_by_day(*, account_id: int, since: dt.date, until: dt.date, key_id: int | None = None) -> list[dict]:
    """Per UTC day, model and provider: spend, requests and tokens."""
    rows = Generation.objects.filter(
        account_id=account_id, created_at__date__gte=since, created_at__date__lte=until
    )
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    return list(
        rows.annotate(day=TruncDate("created_at"))
        .values("day", "model", "provider_name", "endpoint_id")
        .annotate(
            usage=Sum("cost"),
            requests=Count("id"),
            prompt_tokens=Sum("tokens_prompt"),
            completion_tokens=Sum("tokens_completion"),
            reasoning_tokens=Sum("tokens_reasoning"),
        )
        .order_by("-day", "model", "provider_name")
    )


def generations_recent(*, account_id: int, limit: int = 20) -> list[Generation]:
    """The account's latest generations, newest first, with their key (each one's attempts are in
    ``provider_responses``)."""
    return list(
        Generation.objects.filter(account_id=account_id).select_related("api_key").order_by("-created_at")[:limit]
    )


def generation_account_id(*, generation_id: str) -> int | None:
    """Support staff: which account a generation id belongs to (None if unknown)."""
    return Generation.objects.filter(id=generation_id).values_list("account_id", flat=True).first()
