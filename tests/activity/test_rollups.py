"""The activity roll-ups stay equal to the raw generations: through settlement, retries, deleted keys,
the seed command, and a rebuild; check_rollups fails on drift."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from activity.models import Generation, UsageDaily, UsageHourly
from activity.selectors import activity_by_day, key_usage_by_key, rollups_drift, usage_chart
from activity.services import rollups_rebuild
from billing.services import generations_settle
from tests.dashboard.helpers import settle
from tests.factories import make_account, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_settlement_keeps_hourly_and_daily_rollups_exact():
    bundle = make_key(credits="50")
    other = make_key(account=bundle.account, name="second")
    now = dt.datetime.now(dt.UTC).replace(minute=30)
    settle(account=bundle.account, api_key=bundle.key, when=now, cost=100, tokens_prompt=7, tokens_completion=3)
    settle(account=bundle.account, api_key=bundle.key, when=now, cost=250, tokens_prompt=1, tokens_completion=2)
    settle(account=bundle.account, api_key=other.key, when=now - dt.timedelta(hours=3), cost=5, model="x/y", provider="P")
    settle(account=bundle.account, api_key=None, when=now - dt.timedelta(days=2), cost=7, finish_reason="error")

    row = UsageHourly.objects.get(account=bundle.account, api_key_id=bundle.key.id)
    assert (row.requests, row.cost, row.tokens_prompt, row.tokens_completion) == (2, 350, 8, 5)
    assert row.bucket == now.replace(minute=0, second=0, microsecond=0)
    assert UsageDaily.objects.filter(account=bundle.account).count() >= 2
    assert UsageHourly.objects.get(api_key_id=0, account=bundle.account).errors == 1
    assert rollups_drift() == [] and rollups_drift(daily=True) == []
    usage = key_usage_by_key(key_ids=[bundle.key.id, other.key.id])
    assert usage[bundle.key.id].total == 350 and usage[other.key.id].total == 5


def test_a_retried_batch_is_not_rolled_up_twice():
    bundle = make_key(credits="5")
    gen_id = settle(account=bundle.account, api_key=bundle.key, cost=40)
    record = Generation.objects.get(id=gen_id)
    from activity.records import GenerationRecord

    again = GenerationRecord(id=gen_id, account_id=bundle.account.id, api_key_id=bundle.key.id, key_hash=bundle.key.hash,
                             key_window=None, created_at=record.created_at, held=40, cost=40, model=record.model)
    assert generations_settle(records=[again]) == 0
    assert UsageHourly.objects.get(account=bundle.account).requests == 1
    assert rollups_drift() == []


def test_deleted_key_still_matches_and_drift_is_reported_and_repaired():
    bundle = make_key(credits="5")
    settle(account=bundle.account, api_key=bundle.key, cost=40)
    bundle.key.delete()  # generations' key becomes NULL; the roll-up row keeps the old id
    assert rollups_drift() == []
    call_command("check_rollups", stdout=io.StringIO())

    UsageHourly.objects.filter(account=bundle.account).update(cost=41)
    assert len(rollups_drift()) == 1
    with pytest.raises(CommandError):
        call_command("check_rollups", stdout=io.StringIO(), stderr=io.StringIO())
    rollups_rebuild(account_id=bundle.account.id)
    assert rollups_drift() == [] and rollups_drift(daily=True) == []


def test_seed_command_goes_through_the_rollups():
    out = io.StringIO()
    call_command("seed_activity", "seed@example.com", "--generations", "3000", "--days", "40", "--batch", "1000", stdout=out)
    assert Generation.objects.count() == 3000
    assert sum(UsageDaily.objects.values_list("requests", flat=True)) == 3000
    call_command("check_rollups", stdout=out)
    assert "roll-ups ok" in out.getvalue()


def test_charts_and_api_rows_add_up_to_the_raw_rows():
    account = make_account(credits="5")
    key = make_key(account=account).key
    now = dt.datetime.now(dt.UTC)
    costs = [(now - dt.timedelta(minutes=5), 10), (now - dt.timedelta(hours=5), 20), (now - dt.timedelta(days=3), 30),
             (now - dt.timedelta(days=100), 40)]
    for when, cost in costs:
        settle(account=account, api_key=key, when=when, cost=cost)
    expected = {"1h": (10, 1), "1d": (30, 2), "1mo": (60, 3), "1y": (100, 4)}
    for period, (spend, requests) in expected.items():
        for group in ("model", "key", "provider"):
            chart = usage_chart(account_id=account.id, period=period, group=group, now=now)
            assert chart.totals["spend"] == spend, (period, group)
            assert chart.totals["requests"] == requests, (period, group)
            assert chart.totals["tokens"] == 15 * requests
            assert len(chart.series) == 1 and sum(chart.series[0].values["spend"]) == spend
    rows = activity_by_day(account_id=account.id, since=(now - dt.timedelta(days=30)).date(), until=now.date())
    assert sum(r["usage"] for r in rows) == 60 and sum(r["requests"] for r in rows) == 3
