"""The home page (landing or overview) and the activity page: charts, the request log, its detail, CSV.

Views parse the query, call selectors, render. A bad query parameter answers 400 with the reason in
the page; another account's key or generation is a 404. The log refreshes itself with htmx polling of
its first page every 5 s (see ``activity_log``): the first page is one indexed keyset query, so
polling costs about as much as a websocket's heartbeat, needs no per-account fan-out from the
settlement writer's thread, and survives proxies and reconnects with no state.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.context import dashboard_account
from accounts.models import Account, ApiKey
from accounts.selectors import api_key_list, member_choices, member_key_ids
from billing.money import nanos_to_usd_number, nanos_to_usd_string

from . import selectors
from .presenters import generation_body, log_row

LOG_PAGE = 50
MAX_TEXT = 160
MAX_RANGE_DAYS = 3660


class BadQuery(Exception):
    """A query parameter the page cannot use: answered 400 with the message."""


def _account(request: HttpRequest) -> Account:
    return dashboard_account(request)


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "errors/error.html", {"status": 400, "title": "Bad request", "message": message}, status=400)


def _choice(query, name: str, allowed, default: str) -> str:
    value = query.get(name, "") or default
    if value not in allowed:
        raise BadQuery(f"'{name}' must be one of: {', '.join(allowed)}")
    return value


def _text(query, name: str) -> str:
    value = query.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise BadQuery(f"'{name}' is too long")
    if "\x00" in value:
        raise BadQuery(f"'{name}' contains a NUL character")
    return value


def _date(query, name: str) -> dt.date | None:
    raw = query.get(name, "").strip()
    if not raw:
        return None
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"'{name}' must be a date, YYYY-MM-DD") from None
    if not dt.date(2000, 1, 1) <= value <= dt.date(2100, 1, 1):
        raise BadQuery(f"'{name}' is out of range")
    return value


def _key(query, account: Account) -> ApiKey | None:
    """``key`` is a key's hash (its public id); another account's or an unknown one is a 404."""
    raw = query.get("key", "").strip().lower()
    if not raw or "\x00" in raw:
        return None
    api_key = ApiKey.objects.filter(hash=raw, account=account).first() if len(raw) == 64 else None
    if api_key is None:
        raise Http404("No such API key")
    return api_key


def _cursor(raw: str) -> tuple[dt.datetime, str] | None:
    if not raw:
        return None
    at, _, gen_id = raw.partition("~")
    if "\x00" in raw:
        raise BadQuery("'before' is not a valid position in the log")
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        raise BadQuery("'before' is not a valid position in the log") from None
    if when.tzinfo is None or not gen_id or len(gen_id) > 64:
        raise BadQuery("'before' is not a valid position in the log")
    return when, gen_id


def cursor_of(generation) -> str:
    return f"{generation.created_at.astimezone(dt.UTC).isoformat()}~{generation.id}"


def _log_filters(query, account: Account) -> tuple[selectors.LogFilters, ApiKey | None]:
    api_key = _key(query, account)
    since, until = _date(query, "since"), _date(query, "until")
    if since and until and since > until:
        raise BadQuery("'since' must not be after 'until'")
    if since and until and (until - since).days > MAX_RANGE_DAYS:
        raise BadQuery("the date range is too long")
    key_ids = None
    member = _text(query, "member")
    if member:  # an organization member: the keys they created in this account
        found = member_key_ids(account=account, user_public_id=member) if "\x00" not in member else None
        if found is None:
            raise BadQuery("'member' is not a member of this account")
        key_ids = tuple(found)
    filters = selectors.LogFilters(
        model=_text(query, "model"),
        provider=_text(query, "provider"),
        key_id=api_key.id if api_key else None,
        key_ids=key_ids,
        since=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC) if since else None,
        until=dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC) if until else None,
        status=_choice(query, "status", ("", *selectors.STATUSES), ""),
    )
    return filters, api_key


def _bucket_label(period: str, when: dt.datetime) -> str:
    return when.strftime({"1h": "%H:%M", "1d": "%H:00", "1mo": "%b %d", "1y": "%Y-%m"}[period])


def _chart_json(chart: selectors.UsageChart) -> dict:
    return {
        "labels": [_bucket_label(chart.period, b) for b in chart.buckets],
        "series": [
            {
                "name": s.name,
                "values": {
                    "spend": [nanos_to_usd_number(v) for v in s.values["spend"]],
                    "tokens": s.values["tokens"],
                    "requests": s.values["requests"],
                },
            }
            for s in chart.series
        ],
    }


METRIC_TITLES = {"spend": "Spend", "tokens": "Tokens", "requests": "Requests"}


def _cards(chart: selectors.UsageChart) -> list[dict]:
    cards = []
    for metric in selectors.METRICS:
        rows = [{"name": s.name, "colour": i, **s.stats(metric)} for i, s in enumerate(chart.series)]
        cards.append(
            {
                "metric": metric,
                "title": METRIC_TITLES[metric],
                "total": chart.totals[metric],
                "avg_hour": selectors.per_hour(chart.totals[metric], chart.seconds),
                "past_day": chart.past_day[metric],
                "rows": rows,
            }
        )
    return cards


@login_required
@require_GET
def activity_page(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    try:
        period = _choice(request.GET, "period", tuple(selectors.PERIODS), "1d")
        group = _choice(request.GET, "group", tuple(selectors.GROUPS), "model")
        filters, api_key = _log_filters(request.GET, account)
        before = _cursor(request.GET.get("before", ""))
    except BadQuery as exc:
        return _bad_request(request, str(exc))
    chart = selectors.usage_chart(
        account_id=account.id, period=period, group=group, key_id=filters.key_id,
        model=filters.model or None, provider=filters.provider or None, key_ids=filters.key_ids,
    )
    rows = selectors.generations_page(account_id=account.id, filters=filters, before=before, limit=LOG_PAGE + 1)
    query = request.GET.copy()
    query.pop("before", None)
    next_query = None
    if len(rows) > LOG_PAGE:
        rows = rows[:LOG_PAGE]
        next_query = query.copy()
        next_query["before"] = cursor_of(rows[-1])
    context = {
        "period": period,
        "group": group,
        "periods": [("1h", "1 hour"), ("1d", "1 day"), ("1mo", "1 month"), ("1y", "1 year")],
        "groups": [("model", "By model"), ("key", "By API key"), ("provider", "By provider"), ("member", "By member")],
        "chart": _chart_json(chart),
        "cards": _cards(chart),
        "filters": filters,
        "selected_key": api_key,
        "keys": api_key_list(account=account),
        "members": member_choices(account=account),
        "choices": selectors.usage_filter_choices(account_id=account.id),
        "statuses": selectors.STATUSES,
        "rows": [log_row(g) for g in rows],
        "first_page": before is None,
        "query": query.urlencode(),
        "next_query": next_query.urlencode() if next_query else None,
    }
    return render(request, "activity/activity.html", context)


@login_required
@require_GET
def activity_log(request: HttpRequest) -> HttpResponse:
    """The log's first page as table rows: what the page's htmx poll swaps in every few seconds."""
    account = _account(request)
    try:
        filters, _api_key = _log_filters(request.GET, account)
    except BadQuery as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    rows = selectors.generations_page(account_id=account.id, filters=filters, limit=LOG_PAGE)
    return render(request, "activity/_log_rows.html", {"rows": [log_row(g) for g in rows]})


@login_required
@require_GET
def activity_export(request: HttpRequest) -> HttpResponse:
    """The chart's numbers as CSV: one row per bucket and series."""
    account = _account(request)
    try:
        period = _choice(request.GET, "period", tuple(selectors.PERIODS), "1d")
        group = _choice(request.GET, "group", tuple(selectors.GROUPS), "model")
        filters, _api_key = _log_filters(request.GET, account)
    except BadQuery as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    chart = selectors.usage_chart(
        account_id=account.id, period=period, group=group, key_id=filters.key_id,
        model=filters.model or None, provider=filters.provider or None, key_ids=filters.key_ids,
    )
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="activity-{period}-by-{group}.csv"'
    writer = csv.writer(response)
    writer.writerow(["bucket_start_utc", group, "spend_usd", "tokens", "requests"])

    for i, bucket in enumerate(chart.buckets):
        for series in chart.series:
            spend, tokens, requests = (series.values[m][i] for m in selectors.METRICS)
            if spend or tokens or requests:
                writer.writerow([bucket.isoformat(), series.name, nanos_to_usd_string(spend), tokens, requests])
    return response


@login_required
@require_GET
def generation_page(request: HttpRequest, generation_id: str) -> HttpResponse:
    account = _account(request)
    if "\x00" in generation_id:
        raise Http404("No such generation")
    generation = selectors.generation_get(account_id=account.id, generation_id=generation_id[:64])
    if generation is None:
        raise Http404("No such generation")
    body = generation_body(generation)
    pretty = json.dumps({"data": body}, indent=2, default=str)
    return render(request, "activity/generation.html", {"g": generation, "body": body, "body_pretty": pretty})


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        from routing.selectors import model_count

        base = request.build_absolute_uri("/").rstrip("/")
        return render(request, "activity/landing.html", {"models_count": model_count(output_modalities=None), "base": base})
    account = _account(request)
    now = dt.datetime.now(dt.UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    days = selectors.spend_by_day(account_id=account.id, days=30, now=now)
    chart = {
        "labels": [d.strftime("%b %d") for d, _ in days],
        "series": [{"name": "Spend", "values": {"spend": [nanos_to_usd_number(v) for _, v in days]}}],
    }
    context = {
        "account": account,
        "spend_today": selectors.spend_since(account_id=account.id, since=today),
        "spend_month": selectors.spend_since(account_id=account.id, since=today.replace(day=1)),
        "chart": chart,
        "recent": [log_row(g) for g in selectors.generations_page(account_id=account.id, filters=selectors.LogFilters(), limit=8)],
        "has_keys": ApiKey.objects.filter(account=account, is_management=False).exists(),
        "base": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "activity/home.html", context)
