"""Expiry: what is left of a lot a year old leaves the balance, once; users are told beforehand."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core import mail
from django.utils import timezone

from accounts.models import Account
from activity.models import Generation
from billing import services, tasks
from billing.counters import counters
from billing.models import CreditLot, LedgerEntry
from billing.money import usd_to_nanos
from billing.services import credits_grant
from billing.settlement import settlement_flush
from tests.billing.stripe_helpers import assert_ledger_ok, buy
from tests.factories import make_account, make_key
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


def age(lot: CreditLot, days: int) -> None:
    """Pretend the lot arrived ``days`` ago."""
    created = timezone.now() - dt.timedelta(days=days)
    CreditLot.objects.filter(id=lot.id).update(created_at=created, expires_at=created + dt.timedelta(days=365))


def test_partly_used_lot_expires_once_and_everything_reflects_it(stripe_webhooks, gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="0")
    worker = make_key(account=account)
    manager = make_key(account=account, management=True)
    old = buy(stripe_webhooks, account, "10")
    old_lot = CreditLot.objects.get(purchase=old)
    assert chat(gateway, worker, model=slug, max_tokens=9).status_code == 200
    settlement_flush()
    used = sum(Generation.objects.filter(account=account).values_list("cost", flat=True))
    credits_grant(account=account, amount=usd_to_nanos("2"), idempotency_key="fresh-grant")
    age(old_lot, days=366)

    assert tasks.lots_expire() == {"expired": 1}  # the daily beat job
    old_lot.refresh_from_db()
    left = usd_to_nanos("10") - used
    assert old_lot.remaining == 0 and old_lot.expired_at is not None
    entry = LedgerEntry.objects.get(idempotency_key=f"expire:{old_lot.id}")
    assert (entry.kind, entry.amount) == ("expiry", -left)
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("2")  # the newer grant is untouched
    assert account.total_credits == usd_to_nanos("12") - left
    data = httpx.get(f"{gateway.api}/credits", headers=manager.headers, timeout=10).json()["data"]
    assert round(data["total_credits"] - data["total_usage"], 9) == 2
    # Idempotent: the next run (or a concurrent one) finds nothing to do.
    assert services.lots_expire() == {}
    assert LedgerEntry.objects.filter(kind="expiry").count() == 1
    # Requests go on spending what is left.
    assert chat(gateway, worker, model=slug, max_tokens=5).status_code == 200
    settlement_flush()
    assert_ledger_ok()


def test_fully_used_lot_is_marked_expired_without_a_ledger_entry(transactional_db):
    account = make_account(credits="1")
    lot = CreditLot.objects.get(account=account)
    CreditLot.objects.filter(id=lot.id).update(remaining=0)
    Account.objects.filter(id=account.id).update(balance=0, total_usage=usd_to_nanos("1"))
    LedgerEntry.objects.create(account=account, kind="usage", amount=-usd_to_nanos("1"), balance_after=0, idempotency_key="gen:x")
    age(lot, days=400)
    assert services.lots_expire() == {"emptied": 1}
    lot.refresh_from_db()
    assert lot.expired_at is not None
    assert not LedgerEntry.objects.filter(kind="expiry").exists()
    assert_ledger_ok()


def test_expiry_waits_for_credits_held_by_running_requests(transactional_db):
    account = make_account(credits="1")
    lot = CreditLot.objects.get(account=account)
    age(lot, days=366)
    store = counters()
    assert async_to_sync(store.hold)(account_id=account.id, amount=300, key_hash="k" * 64, key_limit=None, window="all").ok
    assert services.lots_expire() == {"deferred": 1}
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("1")
    assert store.snapshot(account.id)["held"] == 300  # only the request's hold is left
    from billing.counters import Settlement

    store.settle([Settlement(account_id=account.id, key_hash=None, window=None, held=300, charged=0)])
    assert services.lots_expire() == {"expired": 1}
    assert Account.objects.get(id=account.id).balance == 0
    assert store.snapshot(account.id) == {"bal": 0, "held": 0}
    assert_ledger_ok()


def test_users_are_told_before_their_credits_expire(transactional_db):
    account = make_account(email="expiring@example.com", credits="7")
    lot = CreditLot.objects.get(account=account)
    fresh = make_account(email="fresh@example.com", credits="3")
    age(lot, days=365 - settings.BILLING_EXPIRY_NOTICE_DAYS + 2)  # expires in 28 days
    lot.refresh_from_db()

    assert tasks.lots_expiry_notify() == 1
    [message] = mail.outbox
    assert message.to == ["expiring@example.com"] and "expire" in message.subject
    assert "$7.00" in message.body and f"{lot.expires_at:%Y-%m-%d}" in message.body
    assert CreditLot.objects.get(id=lot.id).expiry_notified_at is not None
    assert services.lots_expiry_notify() == 0  # once per lot
    assert len(mail.outbox) == 1
    assert not CreditLot.objects.get(account=fresh).expiry_notified_at
    assert_ledger_ok()


def test_the_beat_schedule_runs_the_billing_jobs():
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"billing.tasks.lots_expire", "billing.tasks.lots_expiry_notify", "billing.tasks.purchases_reconcile"} <= schedule
