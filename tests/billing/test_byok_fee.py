"""billing.byok: the BYOK fee (5% of list price after the monthly free allowance) and the monthly request count."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from activity.models import Generation
from billing.byok import byok_fee, byok_request_count, byok_request_count_incr, byok_request_counts_reset, month_id
from tests.factories import make_account

ALLOWANCE = 1_000_000


@pytest.fixture(autouse=True)
def _fresh_counts():
    byok_request_counts_reset()
    yield
    byok_request_counts_reset()


def incr(account_id: int, now: dt.datetime | None = None) -> int:
    return asyncio.run(byok_request_count_incr(account_id, now=now))


# --- the fee ----------------------------------------------------------------------------------


def test_requests_within_the_monthly_allowance_are_free():
    assert byok_fee(list_price_cost_nanos=123_456_789, requests_this_month=1) == 0
    assert byok_fee(list_price_cost_nanos=123_456_789, requests_this_month=ALLOWANCE) == 0


def test_after_the_allowance_the_fee_is_five_percent_of_list_price():
    assert byok_fee(list_price_cost_nanos=1_000_000_000, requests_this_month=ALLOWANCE + 1) == 50_000_000
    assert byok_fee(list_price_cost_nanos=123_456_780, requests_this_month=ALLOWANCE + 1) == 6_172_839
    assert byok_fee(list_price_cost_nanos=0, requests_this_month=5 * ALLOWANCE) == 0


@pytest.mark.parametrize(
    ("list_price", "fee"),
    [(1, 0), (9, 0), (10, 1), (29, 1), (30, 2), (123_456_789, 6_172_839), (123_456_790, 6_172_840)],
)
def test_the_fee_is_rounded_half_up_to_a_nano_dollar(list_price, fee):
    # 5% of 10 = 0.5 -> 1; of 9 = 0.45 -> 0; of 30 = 1.5 -> 2; of 123_456_789 = 6_172_839.45 -> 6_172_839.
    assert byok_fee(list_price_cost_nanos=list_price, requests_this_month=ALLOWANCE + 1) == fee


def test_a_negative_list_price_is_refused():
    with pytest.raises(ValueError):
        byok_fee(list_price_cost_nanos=-1, requests_this_month=ALLOWANCE + 1)


def test_the_allowance_is_a_setting(settings):
    settings.BYOK_FREE_REQUESTS_PER_MONTH = 2
    assert [byok_fee(list_price_cost_nanos=1000, requests_this_month=n) for n in (1, 2, 3, 4)] == [0, 0, 50, 50]
    settings.BYOK_FREE_REQUESTS_PER_MONTH = 0
    assert byok_fee(list_price_cost_nanos=1000, requests_this_month=1) == 50


# --- the monthly count ------------------------------------------------------------------------

JAN_END = dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=dt.UTC)
FEB_START = dt.datetime(2026, 2, 1, 0, 0, 0, tzinfo=dt.UTC)


def test_month_is_the_utc_calendar_month():
    assert month_id(JAN_END) == "202601" and month_id(FEB_START) == "202602"
    # 01:00 on Feb 1st at UTC+2 is still January in UTC.
    assert month_id(dt.datetime(2026, 2, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "202601"


@pytest.mark.django_db(transaction=True)
def test_the_count_increments_per_account_and_starts_again_each_month():
    a, b = make_account().id, make_account().id
    assert [incr(a, JAN_END) for _ in range(3)] == [1, 2, 3]
    assert incr(b, JAN_END) == 1
    assert incr(a, FEB_START) == 1  # a new month, a new allowance
    assert incr(a, FEB_START) == 2
    assert incr(a, JAN_END) == 4  # the late January request still counts for January
    assert byok_request_count(a, now=JAN_END) == 4 and byok_request_count(a, now=FEB_START) == 2
    assert byok_request_count(b, now=FEB_START) == 0
    now = dt.datetime.now(dt.UTC)
    assert incr(a) == 1 and byok_request_count(a, now=now) == 1


@pytest.mark.django_db(transaction=True)
def test_a_lost_count_starts_from_the_months_byok_generations():
    account = make_account()
    for i, (is_byok, when) in enumerate(
        [(True, JAN_END), (True, JAN_END - dt.timedelta(days=3)), (False, JAN_END), (True, FEB_START)]
    ):
        Generation.objects.create(
            id=f"gen-test-{account.id}-{i}", account=account, created_at=when, model="m/x", is_byok=is_byok
        )
    assert byok_request_count(account.id, now=JAN_END) == 2
    assert incr(account.id, JAN_END) == 3
    assert incr(account.id, FEB_START) == 2


@pytest.mark.django_db(transaction=True)
def test_the_counter_and_the_fee_cross_the_allowance_together(settings):
    settings.BYOK_FREE_REQUESTS_PER_MONTH = 3
    account = make_account()
    fees = [byok_fee(list_price_cost_nanos=200, requests_this_month=incr(account.id, JAN_END)) for _ in range(5)]
    assert fees == [0, 0, 0, 10, 10]
    assert byok_fee(list_price_cost_nanos=200, requests_this_month=incr(account.id, FEB_START)) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_are_not_lost():
    account = make_account()

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(byok_request_count_incr(account.id, now=JAN_END) for _ in range(50))))

    counts = asyncio.run(burst())
    assert sorted(counts) == list(range(1, 51))


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_first_byok_requests_reads_the_months_count_once():
    from billing.byok import count_loads

    account = make_account()
    Generation.objects.create(id=f"gen-test-{account.id}-x", account=account, created_at=JAN_END, model="m/x", is_byok=True)
    before = count_loads.loads

    async def burst():
        return await asyncio.gather(*(byok_request_count_incr(account.id, now=JAN_END) for _ in range(50)))

    counts = asyncio.run(burst())
    assert sorted(counts) == list(range(2, 52))  # one shared read of the month (1 generation), no count given twice
    assert count_loads.loads - before == 1
