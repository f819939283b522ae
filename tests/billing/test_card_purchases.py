"""Card purchases through Stripe (localstripe over real HTTP): fee, webhook, credits, failures, reconcile."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from django.utils import timezone

from accounts.models import Account
from billing import fees, services
from billing.errors import CardRequired, PaymentDeclined, PaymentUnavailable, PurchaseInvalid
from billing.models import CreditLot, LedgerEntry, Purchase
from billing.money import usd_to_nanos
from tests.billing.stripe_helpers import (
    assert_ledger_ok,
    save_card,
    stripe_webhooks_lost,
    wait_for,
    wait_purchase,
)
from tests.factories import make_account, make_key
from tests.live_server import free_port
from tests.localstripe_process import CARD_DECLINED_ON_CHARGE, CARD_NEEDS_3DS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("method", "amount", "credits", "fee", "total"),
    [
        ("card", "10", "10.00", "0.80", "10.80"),  # 5.5% is 0.55: the $0.80 minimum applies
        ("card", "14.55", "14.55", "0.80", "15.35"),
        ("card", "20", "20.00", "1.10", "21.10"),
        ("card", "20.10", "20.10", "1.11", "21.21"),  # 1.1055 rounds half up to 1.11
        ("card", "$1,000", "1000.00", "55.00", "1055.00"),
        ("card", 25.5, "25.50", "1.40", "26.90"),  # 1.4025
        ("crypto", "10", "10.00", "0.50", "10.50"),
        ("crypto", "10.10", "10.10", "0.51", "10.61"),  # 0.505 half up
        ("crypto", "10000", "10000.00", "500.00", "10500.00"),
    ],
)
def test_quote_adds_the_fee_on_top(method, amount, credits, fee, total):
    quote = fees.purchase_quote(method=method, amount=amount)
    assert quote.as_dict() == {"method": method, "credits": credits, "fee": fee, "total": total}
    assert quote.credits == usd_to_nanos(credits) and quote.fee == usd_to_nanos(fee)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter an amount"),
        ("ten", "must be a number"),
        ("NaN", "must be a number"),
        ("Infinity", "must be a number"),
        (None, "must be a number"),
        (True, "must be a number"),
        ("10.001", "whole cents"),
        ("4.99", "minimum purchase is $5.00"),
        ("-20", "minimum purchase is $5.00"),
        ("0", "minimum purchase is $5.00"),
        ("10000.01", "maximum purchase is $10,000.00"),
        ("1e9", "maximum purchase is $10,000.00"),
    ],
)
def test_bad_amounts_are_refused_with_a_clear_message(amount, message):
    with pytest.raises(PurchaseInvalid, match=message.replace("$", r"\$")):
        fees.purchase_quote(method="card", amount=amount)


def test_limits_come_from_settings(settings):
    settings.BILLING_MIN_PURCHASE_USD = "20"
    settings.BILLING_MAX_PURCHASE_USD = "50"
    with pytest.raises(PurchaseInvalid, match=r"minimum purchase is \$20.00"):
        fees.purchase_quote(method="card", amount="19.99")
    with pytest.raises(PurchaseInvalid, match=r"maximum purchase is \$50.00"):
        fees.purchase_quote(method="crypto", amount="50.01")
    assert fees.purchase_quote(method="card", amount="20").total_cents == 2110


def test_purchase_grants_credits_only_when_the_webhook_arrives(stripe_webhooks, live_server_url):
    account = make_account(credits="0")
    manager = make_key(account=account, management=True)
    profile = save_card(stripe_webhooks, account)
    assert (profile.card_brand, profile.card_last4) == ("visa", "4242")

    payment = services.card_purchase_start(account=account, amount="20")
    purchase = payment.purchase
    assert payment.status == "succeeded" and not payment.requires_action and payment.client_secret == ""
    assert (purchase.credits, purchase.fee, purchase.total_cents) == (usd_to_nanos("20"), usd_to_nanos("1.10"), 2110)
    assert purchase.stripe_payment_intent_id.startswith("pi_")
    # What Stripe charged: credits plus the fee, in cents, to this customer's saved card.
    [intent] = stripe_webhooks.payment_intents(customer=profile.stripe_customer_id)
    assert (intent["amount"], intent["currency"], intent["status"]) == (2110, "usd", "succeeded")
    assert intent["metadata"]["purchase_id"] == str(purchase.id)

    purchase = wait_purchase(purchase.id)
    account.refresh_from_db()
    assert account.balance == account.total_credits == account.total_purchased == usd_to_nanos("20")
    lot = CreditLot.objects.get(purchase=purchase)
    assert (lot.source, lot.amount, lot.remaining) == ("card", usd_to_nanos("20"), usd_to_nanos("20"))
    assert abs(lot.refundable_until - (lot.created_at + dt.timedelta(hours=24))) < dt.timedelta(seconds=1)
    assert abs(lot.expires_at - (lot.created_at + dt.timedelta(days=365))) < dt.timedelta(seconds=1)
    entry = LedgerEntry.objects.get(idempotency_key=f"purchase:{purchase.id}")
    assert (entry.kind, entry.amount, entry.reference) == ("purchase", usd_to_nanos("20"), intent["id"])
    response = httpx.get(f"{live_server_url.api}/credits", headers=manager.headers, timeout=10)
    assert response.json() == {"data": {"total_credits": 20, "total_usage": 0}}
    assert_ledger_ok()


def test_purchase_without_a_saved_card_is_refused(stripe_webhooks):
    account = make_account(credits="0")
    with pytest.raises(CardRequired):
        services.card_purchase_start(account=account, amount="10")
    assert not Purchase.objects.filter(account=account).exists()
    assert_ledger_ok()


def test_declined_card_grants_nothing(stripe_webhooks):
    account = make_account(credits="1")
    save_card(stripe_webhooks, account, card=CARD_DECLINED_ON_CHARGE)
    with pytest.raises(PaymentDeclined, match="declined"):
        services.card_purchase_start(account=account, amount="10")
    purchase = Purchase.objects.get(account=account)
    assert purchase.status == "failed" and "declined" in purchase.failure_reason
    # Stripe also sends payment_intent.payment_failed: it changes nothing but names the payment.
    wait_for(lambda: Purchase.objects.get(id=purchase.id).stripe_payment_intent_id, what="the failure webhook")
    assert Purchase.objects.get(id=purchase.id).status == "failed"
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("1")
    assert not CreditLot.objects.filter(purchase=purchase).exists()
    assert_ledger_ok()


def test_card_needing_3d_secure_is_paid_after_authentication(stripe_webhooks):
    account = make_account(credits="0")
    save_card(stripe_webhooks, account, card=CARD_NEEDS_3DS)
    payment = services.card_purchase_start(account=account, amount="10")
    assert payment.requires_action and payment.client_secret.startswith(payment.purchase.stripe_payment_intent_id)
    assert payment.purchase.status == "pending"
    # The page runs stripe.confirmCardPayment(client_secret); the user completes 3-D Secure.
    assert stripe_webhooks.authenticate_payment(payment.client_secret)["status"] == "succeeded"
    wait_purchase(payment.purchase.id)
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_stripe_unreachable_charges_nothing_and_says_so(stripe_webhooks, settings):
    account = make_account(credits="0")
    save_card(stripe_webhooks, account)
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PaymentUnavailable, match="unreachable"):
        services.card_purchase_start(account=account, amount="10")
    with pytest.raises(PaymentUnavailable):
        services.card_setup_start(account=make_account(credits="0"))
    purchase = Purchase.objects.get(account=account)
    assert purchase.status == "failed" and "unreachable" in purchase.failure_reason
    account.refresh_from_db()
    assert account.balance == 0
    assert_ledger_ok()


def test_lost_webhook_leaves_a_pending_purchase_that_the_reconcile_job_settles(stripe_webhooks, live_server_url):
    account = make_account(credits="0")
    save_card(stripe_webhooks, account)
    with stripe_webhooks_lost(stripe_webhooks, live_server_url):
        payment = services.card_purchase_start(account=account, amount="15")
    purchase = Purchase.objects.get(id=payment.purchase.id)
    assert purchase.status == "pending"  # "my credits haven't shown up": visible as pending

    # Too early: the job leaves fresh purchases alone.
    assert services.purchases_reconcile() == {}
    assert Purchase.objects.get(id=purchase.id).status == "pending"
    # A few minutes later the job asks Stripe, which says the payment succeeded.
    later = timezone.now() + dt.timedelta(minutes=5)
    assert services.purchases_reconcile(now=later) == {"succeeded": 1}
    assert Purchase.objects.get(id=purchase.id).status == "succeeded"
    assert services.purchases_reconcile(now=later) == {}  # idempotent
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("15")
    assert_ledger_ok()


def test_reconcile_cancels_purchases_that_never_reached_stripe(transactional_db, settings):
    account = make_account(credits="0")
    quote = fees.purchase_quote(method="card", amount="10")
    stranded = Purchase.objects.create(
        account=account, method="card", credits=quote.credits, fee=quote.fee, total_cents=quote.total_cents
    )
    assert services.purchases_reconcile(now=timezone.now() + dt.timedelta(minutes=5)) == {"waiting": 1}
    assert services.purchases_reconcile(now=timezone.now() + dt.timedelta(hours=2)) == {"abandoned": 1}
    stranded.refresh_from_db()
    assert stranded.status == "canceled" and stranded.failure_reason
    assert Account.objects.get(id=account.id).balance == 0
    assert_ledger_ok()


def test_reconcile_survives_stripe_being_unreachable(stripe_webhooks, live_server_url, settings):
    account = make_account(credits="0")
    save_card(stripe_webhooks, account)
    with stripe_webhooks_lost(stripe_webhooks, live_server_url):
        payment = services.card_purchase_start(account=account, amount="10")
    real_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    later = timezone.now() + dt.timedelta(minutes=5)
    assert services.purchases_reconcile(now=later) == {"unreachable": 1}
    assert Purchase.objects.get(id=payment.purchase.id).status == "pending"
    settings.STRIPE_API_BASE = real_base
    assert services.purchases_reconcile(now=later) == {"succeeded": 1}
    assert_ledger_ok()
