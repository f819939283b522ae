"""Refunds of card purchases: unused credits within 24 hours, through Stripe, never the fee, never spent credits."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.utils import timezone

from accounts.models import Account
from activity.models import Generation
from billing import services, stripe_client
from billing.counters import counters
from billing.errors import PaymentRejected, PaymentUnavailable, RefundRefused
from billing.models import CreditLot, LedgerEntry, Purchase, Refund
from billing.money import cents_to_nanos, nanos_to_cents_floor, usd_to_nanos
from billing.settlement import settlement_flush
from openrouter_site.errors import NotFound
from routing.models import Endpoint
from tests.billing.stripe_helpers import assert_ledger_ok, buy
from tests.factories import make_account, make_key
from tests.live_server import free_port
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


def test_unused_credits_are_refunded_within_24_hours_but_not_the_fee(stripe_webhooks, gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="0")
    worker = make_key(account=account)
    manager = make_key(account=account, management=True)
    purchase = buy(stripe_webhooks, account, "10")
    for max_tokens in (7, 11):
        assert chat(gateway, worker, model=slug, max_tokens=max_tokens).status_code == 200
    settlement_flush()
    used = sum(Generation.objects.filter(account=account).values_list("cost", flat=True))
    assert 0 < used < usd_to_nanos("0.01")

    refund = services.purchase_refund(account=account, purchase_id=purchase.id)
    # Whole cents of what is left of the purchase: $9.99 (the usage took part of a cent).
    assert (refund.status, refund.amount_cents, refund.credits) == ("succeeded", 999, usd_to_nanos("9.99"))
    [stripe_refund] = stripe_webhooks.refunds(payment_intent=purchase.stripe_payment_intent_id)
    assert (stripe_refund["id"], stripe_refund["amount"]) == (refund.stripe_refund_id, 999)  # of 1080 paid: no fee back
    purchase.refresh_from_db()
    assert purchase.status == "partially_refunded"
    lot = CreditLot.objects.get(purchase=purchase)
    assert lot.remaining == usd_to_nanos("10") - used - usd_to_nanos("9.99")
    entry = LedgerEntry.objects.get(idempotency_key=f"refund:{refund.id}")
    assert (entry.kind, entry.amount) == ("refund", -usd_to_nanos("9.99"))
    account.refresh_from_db()
    assert account.balance == lot.remaining
    assert account.total_credits == usd_to_nanos("0.01") and account.total_purchased == usd_to_nanos("0.01")
    data = httpx.get(f"{gateway.api}/credits", headers=manager.headers, timeout=10).json()["data"]
    assert data["total_credits"] == 0.01
    # Nothing left to refund (less than a cent).
    with pytest.raises(RefundRefused, match="nothing is left to refund"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    assert counters().snapshot(account.id)["held"] == 0
    assert_ledger_ok()


def test_untouched_purchase_is_refunded_in_full(stripe_webhooks):
    account = make_account(credits="3")  # promotional credits stay
    purchase = buy(stripe_webhooks, account, "25")
    refund = services.purchase_refund(account=account, purchase_id=purchase.id)
    assert refund.amount_cents == 2500
    assert Purchase.objects.get(id=purchase.id).status == "refunded"
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("3")
    with pytest.raises(RefundRefused, match="already refunded"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    assert_ledger_ok()


def test_refund_after_24_hours_is_refused_with_the_reason(stripe_webhooks):
    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")
    CreditLot.objects.filter(purchase=purchase).update(refundable_until=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(RefundRefused, match="within 24 hours") as refused:
        services.purchase_refund(account=account, purchase_id=purchase.id)
    assert "closed on" in refused.value.message
    assert not Refund.objects.exists()
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert stripe_webhooks.refunds(payment_intent=purchase.stripe_payment_intent_id) == []
    assert_ledger_ok()


def test_only_paid_card_purchases_of_the_account_are_refundable(stripe_webhooks):
    account = make_account(credits="5")  # a promotional lot: no purchase to refund
    other = make_account(credits="0")
    purchase = buy(stripe_webhooks, other, "10")
    with pytest.raises(NotFound):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    failed = Purchase.objects.create(account=account, method="card", credits=10**10, fee=8 * 10**8, total_cents=1080, status="failed")
    with pytest.raises(RefundRefused, match="Only completed purchases"):
        services.purchase_refund(account=account, purchase_id=failed.id)
    assert CreditLot.objects.get(account=account).source == "promotional"
    assert_ledger_ok()


def test_refund_racing_with_running_requests_keeps_what_they_hold(stripe_webhooks, gateway, simulator):
    model = "openai/gpt-4o"
    endpoints = list(Endpoint.objects.filter(model__slug=model, active=True).select_related("provider"))
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, latency_ms=1500)
    account = make_account(credits="0")
    worker = make_key(account=account)
    purchase = buy(stripe_webhooks, account, "10")

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(chat, gateway, worker, model=model, max_tokens=16000) for _ in range(3)]

        def all_holding():
            return sum(simulator.stats(e.provider.slug)["requests"] for e in endpoints) >= 3

        deadline = timezone.now() + dt.timedelta(seconds=10)
        while not all_holding() and timezone.now() < deadline:
            pass
        held = counters().snapshot(account.id)["held"]
        assert held >= 3 * usd_to_nanos("0.16"), held  # three worst cases of 16,000 tokens at $10/M
        refund = services.purchase_refund(account=account, purchase_id=purchase.id)
        statuses = [future.result().status_code for future in running]

    assert statuses == [200, 200, 200]
    settlement_flush()
    # The refund took what was not held, in whole cents; the requests kept theirs and were paid.
    assert refund.credits == cents_to_nanos(nanos_to_cents_floor(usd_to_nanos("10") - held))
    used = sum(Generation.objects.filter(account=account).values_list("cost", flat=True))
    account.refresh_from_db()
    assert used > 0 and account.balance >= 0
    assert account.balance == usd_to_nanos("10") - refund.credits - used
    assert counters().snapshot(account.id)["held"] == 0
    assert_ledger_ok()


def test_refund_is_refused_while_every_credit_is_held(stripe_webhooks):
    from asgiref.sync import async_to_sync

    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")
    store = counters()
    assert async_to_sync(store.hold)(account_id=account.id, amount=usd_to_nanos("9.995"), key_hash="k" * 64, key_limit=None, window="all").ok
    with pytest.raises(RefundRefused, match="Running requests are using these credits"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    assert store.snapshot(account.id)["held"] == usd_to_nanos("9.995")  # the refund's own hold was released
    assert not Refund.objects.exists()
    assert_ledger_ok()


def test_stripe_refusing_the_refund_puts_the_credits_back(stripe_webhooks, monkeypatch):
    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")

    def refuse(**kwargs):
        raise PaymentRejected()

    monkeypatch.setattr(stripe_client, "refund_create", refuse)
    with pytest.raises(RefundRefused, match="Stripe refused"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    refund = Refund.objects.get()
    assert refund.status == "failed"
    assert LedgerEntry.objects.get(idempotency_key=f"refund-reversal:{refund.id}").amount == usd_to_nanos("10")
    account.refresh_from_db()
    assert account.balance == account.total_credits == usd_to_nanos("10")
    assert CreditLot.objects.get(purchase=purchase).remaining == usd_to_nanos("10")
    assert Purchase.objects.get(id=purchase.id).status == "succeeded"
    assert_ledger_ok()


def test_refund_with_stripe_unreachable_stays_pending_until_reconciled(stripe_webhooks, settings):
    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")
    real_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PaymentUnavailable, match="pending"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    refund = Refund.objects.get()
    assert refund.status == "pending"
    # While Stripe's answer is unknown the credits stay out of the balance: no request can spend them.
    account.refresh_from_db()
    assert account.balance == 0
    assert_ledger_ok()
    settings.STRIPE_API_BASE = real_base
    soon = timezone.now() + dt.timedelta(minutes=5)
    assert services.purchases_reconcile(now=soon) == {"refund_waiting": 1}
    later = timezone.now() + dt.timedelta(hours=2)
    assert services.purchases_reconcile(now=later) == {"refund_reversed": 1}
    assert Refund.objects.get().status == "failed"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_reconcile_completes_a_refund_stripe_made(stripe_webhooks):
    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")
    from billing.services.refunds import _refund_reserve

    refund = _refund_reserve(purchase_id=purchase.id, limit=usd_to_nanos("4"))  # then the process died ...
    stripe_client.refund_create(  # ... right after Stripe refunded
        payment_intent_id=purchase.stripe_payment_intent_id,
        amount_cents=refund.amount_cents,
        idempotency_key=f"refund:{refund.id}",
        metadata={"refund_id": str(refund.id)},
    )
    assert services.purchases_reconcile(now=timezone.now() + dt.timedelta(minutes=5)) == {"refund_succeeded": 1}
    refund.refresh_from_db()
    assert refund.status == "succeeded" and refund.stripe_refund_id.startswith("re_")
    assert Purchase.objects.get(id=purchase.id).status == "partially_refunded"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("6")
    assert_ledger_ok()
