"""Auto top-up: usage that crosses the threshold buys one top-up off session; declines switch it off."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import httpx
import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Account
from activity.models import Generation
from billing import services, tasks
from billing.errors import AutoTopupInvalid, CardRequired, PaymentUnavailable, PurchaseInvalid
from billing.models import BillingProfile, Purchase
from billing.money import usd_to_nanos
from billing.services import credits_grant
from billing.settlement import settlement_flush
from tests.billing.stripe_helpers import assert_ledger_ok, save_card, wait_for, wait_purchase
from tests.factories import make_account, make_key
from tests.live_server import free_port
from tests.localstripe_process import CARD_DECLINED_ON_CHARGE, CARD_NEEDS_3DS
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

TOPUP_TOTAL_CENTS = 2500 + 138  # $25 of credits + 5.5% ($1.375, rounded half up)


def topup_account(localstripe, *, balance: str, card: str | None = None) -> tuple[Account, BillingProfile]:
    account = make_account(credits=balance)
    save_card(localstripe, account, **({"card": card} if card else {}))
    profile = services.auto_topup_configure(account=account, enabled=True, threshold="5", amount="25")
    return account, profile


def topups(account: Account) -> list[Purchase]:
    return list(Purchase.objects.filter(account=account, is_auto_topup=True).order_by("id"))


def test_twenty_concurrent_requests_crossing_the_threshold_buy_one_top_up(
    stripe_webhooks, gateway, simulator, celery_eager
):
    slug, endpoints = multi_provider_model()
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, latency_ms=60)
    account, profile = topup_account(stripe_webhooks, balance="0")
    credits_grant(account=account, amount=usd_to_nanos("5") + 2_000, idempotency_key="just-above-threshold")
    worker = make_key(account=account)
    body = {"model": slug, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *[client.post(f"{gateway.api}/chat/completions", json=body, headers=worker.headers) for _ in range(20)]
            )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 20
    settlement_flush()
    [topup] = wait_for(lambda: topups(account), what="the top-up")
    wait_purchase(topup.id)
    settlement_flush()
    # One PaymentIntent, off session, for $25 + fee; its credits came through the webhook.
    [intent] = stripe_webhooks.payment_intents(customer=profile.stripe_customer_id)
    assert (intent["amount"], intent["metadata"]["purchase_id"]) == (TOPUP_TOTAL_CENTS, str(topup.id))
    assert len(topups(account)) == 1
    used = sum(Generation.objects.filter(account=account).values_list("cost", flat=True))
    assert Generation.objects.filter(account=account).count() == 20
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("30") + 2_000 - used
    profile.refresh_from_db()
    assert profile.auto_topup_in_flight is None and profile.auto_topup_failures == 0
    assert_ledger_ok()


def test_twenty_concurrent_triggers_charge_once(stripe_webhooks):
    account, profile = topup_account(stripe_webhooks, balance="1")
    results, errors = [], []

    def trigger():
        try:
            results.append(tasks.auto_topup_charge.apply(kwargs={"account_id": account.id}).get())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=trigger) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    [topup] = topups(account)
    assert sorted(results, key=str) == sorted([topup.id] + [None] * 19, key=str)
    wait_purchase(topup.id)
    assert len(stripe_webhooks.payment_intents(customer=profile.stripe_customer_id)) == 1
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("26")
    # Above the threshold now: another trigger does nothing.
    assert services.auto_topup_charge(account_id=account.id) is None
    assert_ledger_ok()


def test_declined_card_switches_auto_top_up_off_after_three_failures_and_emails(stripe_webhooks, settings):
    settings.BILLING_AUTO_TOPUP_RETRY_SECONDS = 0
    account, profile = topup_account(stripe_webhooks, balance="1", card=CARD_DECLINED_ON_CHARGE)
    for attempt in (1, 2, 3):
        purchase = services.auto_topup_charge(account_id=account.id)
        assert purchase.status == "failed" and "declined" in purchase.failure_reason
        profile.refresh_from_db()
        assert profile.auto_topup_failures == attempt and profile.auto_topup_in_flight is None
    assert not profile.auto_topup_enabled
    assert "3 failed top-ups" in profile.auto_topup_disabled_reason
    [email] = mail.outbox
    assert email.to == [account.owner.email] and "Auto top-up turned off" in email.subject
    assert services.auto_topup_charge(account_id=account.id) is None  # off now
    assert services.auto_topup_maybe_trigger(balances={account.id: 0}) == []
    assert len(topups(account)) == 3
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("1")
    assert_ledger_ok()


def test_after_a_decline_the_next_attempt_waits(stripe_webhooks):
    account, profile = topup_account(stripe_webhooks, balance="1", card=CARD_DECLINED_ON_CHARGE)
    assert services.auto_topup_charge(account_id=account.id).status == "failed"
    assert services.auto_topup_charge(account_id=account.id) is None
    assert services.auto_topup_maybe_trigger(balances={account.id: 0}) == []
    BillingProfile.objects.filter(id=profile.id).update(auto_topup_retry_after=timezone.now() - dt.timedelta(seconds=1))
    assert services.auto_topup_maybe_trigger(balances={account.id: 0}) == [account.id]
    assert_ledger_ok()


def test_a_card_asking_for_authentication_cannot_top_up_off_session(stripe_webhooks):
    account, profile = topup_account(stripe_webhooks, balance="1", card=CARD_NEEDS_3DS)
    purchase = services.auto_topup_charge(account_id=account.id)
    assert purchase.status == "failed" and "authentication" in purchase.failure_reason
    [intent] = stripe_webhooks.payment_intents(customer=profile.stripe_customer_id)
    assert intent["status"] == "canceled"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("1")
    assert_ledger_ok()


def test_stripe_unreachable_retries_the_same_top_up_and_never_charges_twice(stripe_webhooks, settings):
    account, profile = topup_account(stripe_webhooks, balance="1")
    real_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PaymentUnavailable) as unreachable:
        services.auto_topup_charge(account_id=account.id)
    [topup] = topups(account)
    assert unreachable.value.purchase_id == topup.id and topup.status == "pending"
    assert BillingProfile.objects.get(id=profile.id).auto_topup_in_flight_id == topup.id
    assert services.auto_topup_charge(account_id=account.id) is None  # in flight: no second purchase
    settings.STRIPE_API_BASE = real_base
    # The task retries that purchase (same idempotency key); a duplicate retry does nothing.
    assert services.auto_topup_charge(account_id=account.id, purchase_id=topup.id).stripe_payment_intent_id
    assert services.auto_topup_charge(account_id=account.id, purchase_id=topup.id) is None
    wait_purchase(topup.id)
    assert len(stripe_webhooks.payment_intents(customer=profile.stripe_customer_id)) == 1
    assert BillingProfile.objects.get(id=profile.id).auto_topup_in_flight is None
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("26")
    assert_ledger_ok()


def test_a_top_up_that_never_reached_stripe_is_given_up_without_counting_a_failure(stripe_webhooks, settings):
    account, profile = topup_account(stripe_webhooks, balance="1")
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PaymentUnavailable):
        services.auto_topup_charge(account_id=account.id)
    assert services.purchases_reconcile(now=timezone.now() + dt.timedelta(hours=2)) == {"abandoned": 1}
    profile.refresh_from_db()
    assert profile.auto_topup_in_flight is None and profile.auto_topup_failures == 0 and profile.auto_topup_enabled
    assert topups(account)[0].status == "canceled"
    assert_ledger_ok()


def test_trigger_only_below_the_threshold_when_on_and_idle(stripe_webhooks):
    account, profile = topup_account(stripe_webhooks, balance="1")
    assert services.auto_topup_maybe_trigger(balances={account.id: usd_to_nanos("5")}) == []  # not below
    assert services.auto_topup_maybe_trigger(balances={account.id: usd_to_nanos("4.99")}) == [account.id]
    services.auto_topup_configure(account=account, enabled=False, threshold="5", amount="25")
    assert services.auto_topup_maybe_trigger(balances={account.id: 0}) == []
    assert services.auto_topup_charge(account_id=account.id) is None
    assert not topups(account)
    assert_ledger_ok()


def test_settings_are_validated(stripe_webhooks):
    account = make_account(credits="0")
    with pytest.raises(CardRequired):
        services.auto_topup_configure(account=account, enabled=True, threshold="5", amount="25")
    profile = services.auto_topup_configure(account=account, enabled=False, threshold="2.50", amount="30")
    assert (profile.auto_topup_threshold, profile.auto_topup_amount) == (usd_to_nanos("2.5"), usd_to_nanos("30"))
    with pytest.raises(PurchaseInvalid, match="threshold must be a number"):
        services.auto_topup_configure(account=account, enabled=False, threshold="lots", amount="25")
    with pytest.raises(PurchaseInvalid, match="minimum purchase"):
        services.auto_topup_configure(account=account, enabled=False, threshold="5", amount="1")
    with pytest.raises(AutoTopupInvalid, match="threshold must be between"):
        services.auto_topup_configure(account=account, enabled=False, threshold="-1", amount="25")
    save_card(stripe_webhooks, account)
    assert services.auto_topup_configure(account=account, enabled=True, threshold="5", amount="25").auto_topup_enabled
    assert_ledger_ok()
