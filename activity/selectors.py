"""Reads about generations and usage. Every query is scoped to an account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute, TruncMonth

from accounts.models import ApiKey
from openrouter_site.sql import ids_present

from .models import Generation, UsageDaily, UsageHourly


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
    week, this month.

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
            byok_total=Sum("byok_cost"),
            byok_daily=Sum("byok_cost", filter=Q(bucket__gte=day)),
            byok_weekly=Sum("byok_cost", filter=Q(bucket__gte=week)),
            byok_monthly=Sum("byok_cost", filter=Q(bucket__gte=month)),
        )
    )
    usage = {
        row["api_key_id"]: KeyUsage(
            total=row["total"] or 0,
            daily=row["daily"] or 0,
            weekly=row["weekly"] or 0,
            monthly=row["monthly"] or 0,
            byok_total=row["byok_total"] or 0,
            byok_daily=row["byok_daily"] or 0,
            byok_weekly=row["byok_weekly"] or 0,
            byok_monthly=row["byok_monthly"] or 0,
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


def activity_by_day(
    *, account_id: int, since: dt.date, until: dt.date, key_id: int | None = None, key_ids: list[int] | None = None
) -> list[dict]:
    """Per UTC day, model and provider endpoint: spend, requests and tokens (from the daily roll-ups).
    ``key_ids`` narrows to those keys (an organization member's keys)."""
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    rows = UsageDaily.objects.filter(account_id=account_id, bucket__gte=start, bucket__lt=end)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    if key_ids is not None:
        rows = rows.filter(api_key_id__in=key_ids)
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


# --- The activity page: charts from the roll-ups, the request log by keyset ---------------------

PERIODS = {  # period: (bucket, how many buckets)
    "1h": ("minute", 60),
    "1d": ("hour", 24),
    "1mo": ("day", 30),
    "1y": ("month", 12),
}
GROUPS = {"model": "model", "key": "api_key_id", "provider": "provider_name", "member": "api_key_id"}
METRICS = ("spend", "tokens", "requests")
MAX_SERIES = 8  # the largest groups get their own colour; the rest are summed as "Other"


@dataclass(frozen=True)
class Series:
    name: str
    values: dict[str, list[int]]  # metric -> one value per bucket

    def stats(self, metric: str) -> dict[str, int | float]:
        values = self.values[metric]
        total = sum(values)
        return {"min": min(values), "max": max(values), "avg": divide_half_up(total, len(values)), "sum": total}


@dataclass(frozen=True)
class UsageChart:
    period: str
    group: str
    buckets: list[dt.datetime]
    series: list[Series]
    totals: dict[str, int]  # metric -> sum over the period
    past_day: dict[str, int]  # metric -> sum over the last 24 hours
    seconds: int  # the period's length (avg per hour = total * 3600 / seconds, in integers)


def _bucket_starts(period: str, now: dt.datetime) -> list[dt.datetime]:
    unit, count = PERIODS[period]
    if unit == "minute":
        last = now.replace(second=0, microsecond=0)
        return [last - dt.timedelta(minutes=i) for i in reversed(range(count))]
    if unit == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        return [last - dt.timedelta(hours=i) for i in reversed(range(count))]
    if unit == "day":
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return [last - dt.timedelta(days=i) for i in reversed(range(count))]
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [month]
    for _ in range(count - 1):
        month = (month - dt.timedelta(days=1)).replace(day=1)
        starts.append(month)
    return list(reversed(starts))


def _month_of(value: dt.datetime) -> dt.datetime:
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _sums(rows, *, cost: str, tokens: tuple[str, ...], requests: str | None):
    aggregates = {"spend": Sum(cost), **{f"t_{t}": Sum(t) for t in tokens}}
    aggregates["requests"] = Sum(requests) if requests else Count("id")
    return rows.annotate(**aggregates)


def usage_chart(
    *, account_id: int, period: str, group: str, now: dt.datetime | None = None,
    key_id: int | None = None, model: str | None = None, provider: str | None = None,
    key_ids: tuple[int, ...] | None = None,
) -> UsageChart:
    """Spend, tokens and requests per bucket and group over a period.

    1 hour reads the raw generations of the last hour (by minute, through the (account, created_at)
    index); 1 day reads the hourly roll-ups; 1 month and 1 year the daily roll-ups. No page view reads
    more than a day's roll-up rows per group, whatever the account's size.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    unit, _count = PERIODS[period]
    starts = _bucket_starts(period, now)
    group_field = GROUPS[group]
    filters: dict = {"account_id": account_id}
    if unit == "minute":
        source = Generation.objects.filter(created_at__gte=starts[0])
        if key_id is not None:
            filters["api_key_id"] = key_id
        time_field, tokens, requests = "created_at", ("tokens_prompt", "tokens_completion"), None
    else:
        source = (UsageHourly if unit == "hour" else UsageDaily).objects.filter(bucket__gte=starts[0])
        if key_id is not None:
            filters["api_key_id"] = key_id
        time_field, tokens, requests = "bucket", ("tokens_prompt", "tokens_completion"), "requests"
    if key_ids is not None:  # an organization member's keys
        filters["api_key_id__in"] = key_ids
    if model:
        filters["model"] = model
    if provider:
        filters["provider_name"] = provider
    rows = source.filter(**filters)
    if unit == "minute":
        rows = rows.annotate(b=TruncMinute("created_at", tzinfo=dt.UTC)).values("b", group_field)
    elif unit == "month":  # twelve buckets a group, summed by the database
        rows = rows.annotate(b=TruncMonth("bucket", tzinfo=dt.UTC)).values("b", group_field)
    else:
        rows = rows.values(time_field, group_field)
    rows = _sums(rows, cost="cost", tokens=tokens, requests=requests)
    index = {start: i for i, start in enumerate(starts)}
    per_group: dict[object, dict[str, list[int]]] = {}
    for row in rows:
        when = row["b"] if unit in ("minute", "month") else row[time_field]
        when = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
        if unit == "month":
            when = _month_of(when)
        slot = index.get(when)
        if slot is None:
            continue
        values = per_group.setdefault(row[group_field], {m: [0] * len(starts) for m in METRICS})
        values["spend"][slot] += row["spend"] or 0
        values["tokens"][slot] += sum(row[f"t_{t}"] or 0 for t in tokens)
        values["requests"][slot] += row["requests"] or 0
    if group == "member":  # by who created the key (organizations): the keys' series summed per creator
        per_group = _by_creator(per_group)
    ordered = sorted(per_group.items(), key=lambda item: (-sum(item[1]["spend"]), -sum(item[1]["requests"]), str(item[0])))
    names = _group_names(group, [g for g, _ in ordered])
    series = [Series(name=names[g], values=v) for g, v in ordered[:MAX_SERIES]]
    if len(ordered) > MAX_SERIES:
        other = {m: [0] * len(starts) for m in METRICS}
        for _g, values in ordered[MAX_SERIES:]:
            for m in METRICS:
                other[m] = [a + b for a, b in zip(other[m], values[m], strict=True)]
        series.append(Series(name="Other", values=other))
    totals = {m: sum(sum(s.values[m]) for s in series) for m in METRICS}
    seconds = {"minute": 3600, "hour": 86400, "day": 30 * 86400, "month": int((now - starts[0]).total_seconds())}[unit]
    return UsageChart(
        period=period, group=group, buckets=starts, series=series, totals=totals,
        past_day=past_day_usage(account_id=account_id, now=now, key_id=key_id, model=model, provider=provider),
        seconds=max(seconds, 3600),
    )


def divide_half_up(amount: int, by: int) -> int:
    """``amount / by`` in integers (money and token counts never pass through a float), halves up."""
    return (2 * amount + by) // (2 * by) if by > 0 else 0


def per_hour(amount: int, seconds: int) -> int:
    """An average per hour over ``seconds``, in integers."""
    return divide_half_up(amount * 3600, seconds)


def generations_recent(*, account_id: int, limit: int = 20) -> list[Generation]:
    """The account's latest generations, newest first, with their key (each one's attempts are in
    ``provider_responses``)."""
    return list(
        Generation.objects.filter(account_id=account_id).select_related("api_key").order_by("-created_at")[:limit]
    )


def generation_ids_stored(*, ids: list[str]) -> set[str]:
    """Which of ``ids`` are stored already (the settlement writer's idempotency check)."""
    return ids_present(table=Generation._meta.db_table, column="id", ids=ids)


def generation_account_id(*, generation_id: str) -> int | None:
    """Support staff: which account a generation id belongs to (None if unknown)."""
    return Generation.objects.filter(id=generation_id).values_list("account_id", flat=True).first()


def past_day_usage(*, account_id: int, now: dt.datetime, key_id: int | None = None, model: str | None = None,
                   provider: str | None = None) -> dict[str, int]:
    """The last 24 whole and current hours, from the hourly roll-ups."""
    since = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=23)
    rows = UsageHourly.objects.filter(account_id=account_id, bucket__gte=since)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    if model:
        rows = rows.filter(model=model)
    if provider:
        rows = rows.filter(provider_name=provider)
    sums = rows.aggregate(spend=Sum("cost"), tp=Sum("tokens_prompt"), tc=Sum("tokens_completion"), requests=Sum("requests"))
    return {"spend": sums["spend"] or 0, "tokens": (sums["tp"] or 0) + (sums["tc"] or 0), "requests": sums["requests"] or 0}


def _by_creator(per_key: dict) -> dict:
    creators = dict(ApiKey.objects.filter(id__in=[k for k in per_key if k]).values_list("id", "creator_id"))
    merged: dict = {}
    for key_id, values in per_key.items():
        into = merged.setdefault(creators.get(key_id), {m: [0] * len(values["spend"]) for m in METRICS})
        for m in METRICS:
            into[m] = [a + b for a, b in zip(into[m], values[m], strict=True)]
    return merged


def _group_names(group: str, values: list) -> dict:
    if group == "member":
        emails = dict(get_user_model().objects.filter(id__in=[v for v in values if v]).values_list("id", "email"))
        return {v: emails.get(v, "(no key or deleted user)") for v in values}
    if group != "key":
        return {v: (v or "(unknown)") for v in values}
    names = dict(ApiKey.objects.filter(id__in=[v for v in values if v]).values_list("id", "name"))
    return {v: names.get(v, "(no key or deleted key)") for v in values}


def spend_by_day(*, account_id: int, days: int, now: dt.datetime | None = None) -> list[tuple[dt.date, int]]:
    """The account's spend per UTC day over the last ``days`` days (the overview's small chart)."""
    now = now or dt.datetime.now(dt.UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - dt.timedelta(days=days - 1)
    sums = dict(
        UsageDaily.objects.filter(account_id=account_id, bucket__gte=first)
        .values("bucket").annotate(spend=Sum("cost")).values_list("bucket", "spend")
    )
    sums = {k.astimezone(dt.UTC).date(): v for k, v in sums.items()}
    return [((first + dt.timedelta(days=i)).date(), sums.get((first + dt.timedelta(days=i)).date(), 0) or 0)
            for i in range(days)]


def spend_since(*, account_id: int, since: dt.datetime) -> int:
    """Spend from a UTC midnight on (daily roll-ups)."""
    return UsageDaily.objects.filter(account_id=account_id, bucket__gte=since).aggregate(s=Sum("cost"))["s"] or 0


def usage_daily_rows(*, account_id: int, limit: int = 60) -> list[dict]:
    """Usage per UTC day, newest first (the credits page's history)."""
    return list(
        UsageDaily.objects.filter(account_id=account_id)
        .values("bucket").annotate(cost=Sum("cost"), requests=Sum("requests")).order_by("-bucket")[:limit]
    )


FILTER_CHOICES_SECONDS = 300


def usage_filter_choices(*, account_id: int) -> dict[str, list]:
    """Models and providers the account used in the last year (the log's filter menus); cached a few
    minutes per account (a model used for the first time shows up in the menu within that time)."""
    cache_key = f"activity:choices:{account_id}"
    choices = cache.get(cache_key)
    if choices is None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=366)
        rows = UsageDaily.objects.filter(account_id=account_id, bucket__gte=since)
        pairs = set(rows.values_list("model", "provider_name").distinct())
        choices = {"models": sorted({m for m, _ in pairs}), "providers": sorted({p for _, p in pairs if p})}
        cache.set(cache_key, choices, FILTER_CHOICES_SECONDS)
    return choices


@dataclass(frozen=True)
class LogFilters:
    model: str = ""
    provider: str = ""
    key_id: int | None = None
    key_ids: tuple[int, ...] | None = None  # an organization member's keys (the member filter)
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive
    status: str = ""  # "" | "ok" | "error" | "cancelled"


STATUSES = ("ok", "error", "cancelled")


def generations_page(
    *, account_id: int, filters: LogFilters, before: tuple[dt.datetime, str] | None = None, limit: int = 50,
    after: tuple[dt.datetime, str] | None = None,
) -> list[Generation]:
    """One page of the request log, newest first, by keyset: rows strictly older than ``before``
    (the last row of the previous page) or, for the live poll, strictly newer than ``after``."""
    rows = Generation.objects.filter(account_id=account_id).select_related("api_key")
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.provider:
        rows = rows.filter(provider_name=filters.provider)
    if filters.key_id is not None:
        rows = rows.filter(api_key_id=filters.key_id)
    if filters.key_ids is not None:
        rows = rows.filter(api_key_id__in=filters.key_ids)
    if filters.since is not None:
        rows = rows.filter(created_at__gte=filters.since)
    if filters.until is not None:
        rows = rows.filter(created_at__lt=filters.until)
    if filters.status == "error":
        rows = rows.filter(finish_reason="error")
    elif filters.status == "cancelled":
        rows = rows.filter(cancelled=True)
    elif filters.status == "ok":
        rows = rows.filter(cancelled=False).exclude(finish_reason="error")
    # Keyset: (created_at, id) strictly before the cursor. The plain bound on created_at lets the index
    # range start at the cursor (an OR alone would make the database filter every newer row).
    if before is not None:
        at, gen_id = before
        rows = rows.filter(created_at__lte=at).filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=gen_id))
    if after is not None:
        at, gen_id = after
        rows = rows.filter(created_at__gte=at).filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=gen_id))
    return list(
        rows.defer("provider_responses", "user_agent", "http_referer").order_by("-created_at", "-id")[:limit]
    )


# --- Roll-ups == raw rows -------------------------------------------------------------------------


def rollups_drift(*, account_id: int | None = None, daily: bool = False) -> list[dict]:
    """Roll-up rows that disagree with the generations they sum (empty when exact).

    Compares every (account, bucket, model, provider, key, endpoint) group of the raw generations
    with the hourly (or daily) roll-ups. A generation without a key and a roll-up row whose key was
    deleted both count as key 0 (the key's generations had their key set to NULL).
    """
    trunc = (TruncDay if daily else TruncHour)("created_at", tzinfo=dt.UTC)
    raw = Generation.objects.all() if account_id is None else Generation.objects.filter(account_id=account_id)
    table = UsageDaily if daily else UsageHourly
    rolled = table.objects.all() if account_id is None else table.objects.filter(account_id=account_id)
    sums = ("requests", "cost", "byok_cost", "tokens_prompt", "tokens_completion", "tokens_reasoning", "tokens_cached", "errors")

    def key(account, bucket, model, provider, api_key, endpoint) -> tuple:
        return (account, bucket.astimezone(dt.UTC), model, provider, api_key or 0, endpoint or 0)

    expected: dict[tuple, list[int]] = {}
    rows = (
        raw.annotate(b=trunc)
        .values("account_id", "b", "model", "provider_name", "api_key_id", "endpoint_id")
        .annotate(
            requests=Count("id"), cost=Sum("cost"), byok_cost=Sum("upstream_cost", filter=Q(is_byok=True)),
            tokens_prompt=Sum("tokens_prompt"), tokens_completion=Sum("tokens_completion"),
            tokens_reasoning=Sum("tokens_reasoning"), tokens_cached=Sum("tokens_cached"),
            errors=Count("id", filter=Q(finish_reason="error")),
        )
        .order_by()
    )
    for row in rows.iterator(chunk_size=10_000):
        k = key(row["account_id"], row["b"], row["model"], row["provider_name"], row["api_key_id"], row["endpoint_id"])
        acc = expected.setdefault(k, [0] * len(sums))
        for i, name in enumerate(sums):
            acc[i] += row[name] or 0
    live_keys = set(ApiKey.objects.values_list("id", flat=True))
    actual: dict[tuple, list[int]] = {}
    for row in rolled.values("account_id", "bucket", "model", "provider_name", "api_key_id", "endpoint_id", *sums).iterator(chunk_size=10_000):
        api_key = row["api_key_id"] if row["api_key_id"] in live_keys else 0
        k = key(row["account_id"], row["bucket"], row["model"], row["provider_name"], api_key, row["endpoint_id"])
        acc = actual.setdefault(k, [0] * len(sums))
        for i, name in enumerate(sums):
            acc[i] += row[name]
    drift = []
    for k in expected.keys() | actual.keys():
        want, have = expected.get(k, [0] * len(sums)), actual.get(k, [0] * len(sums))
        if want != have:
            drift.append({"group": k, "raw": dict(zip(sums, want, strict=True)), "rollup": dict(zip(sums, have, strict=True))})
    return drift


def generation_content_get(*, account_id: int, generation_id: str):
    """The stored (encrypted) content of one of the account's generations, or None."""
    from .models import GenerationContent

    return GenerationContent.objects.filter(account_id=account_id, generation_id=generation_id).first()
