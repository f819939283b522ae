"""POST /billing/webhooks/stripe: verified, stored once, processed once, 4xx for bad input, 5xx to be retried."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from accounts.models import Account
from billing import services
from billing.models import LedgerEntry, Purchase, WebhookEvent
from billing.money import usd_to_nanos
from tests.billing.stripe_helpers import (
    assert_ledger_ok,
    post_stripe_event,
    save_card,
    stripe_signature,
    stripe_webhooks_lost,
    succeeded_event,
    wait_purchase,
)
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def paid_without_webhook(localstripe, server, amount: str = "10") -> tuple[Account, Purchase, dict]:
    """A card payment Stripe took whose webhook did not arrive yet: the purchase and Stripe's event."""
    account = make_account(credits="0")
    save_card(localstripe, account)
    with stripe_webhooks_lost(localstripe, server):
        purchase = services.card_purchase_start(account=account, amount=amount).purchase
    assert Purchase.objects.get(id=purchase.id).status == "pending"
    return account, purchase, succeeded_event(localstripe, purchase.stripe_payment_intent_id)


def test_replayed_ten_times_at_once_grants_once(stripe_webhooks, live_server_url):
    account, purchase, event = paid_without_webhook(stripe_webhooks, live_server_url)
    body = json.dumps(event).encode()
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: post_stripe_event(live_server_url, body), range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert sum(1 for r in responses if not r.json().get("duplicate")) >= 1
    for _ in range(10):  # and ten more, one after the other
        response = post_stripe_event(live_server_url, body)
        assert response.status_code == 200 and response.json()["duplicate"] is True
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert WebhookEvent.objects.get(event_id=event["id"]).status == "processed"
    assert LedgerEntry.objects.filter(account=account, kind="purchase").count() == 1
    assert Purchase.objects.get(id=purchase.id).status == "succeeded"
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_forged_stale_or_unsigned_webhooks_are_refused_and_not_stored(stripe_webhooks, live_server_url):
    account, purchase, event = paid_without_webhook(stripe_webhooks, live_server_url)
    body = json.dumps(event).encode()
    assert post_stripe_event(live_server_url, body, secret="whsec_forged").status_code == 400
    assert post_stripe_event(live_server_url, body, timestamp=int(time.time()) - 3600).status_code == 400
    tampered = json.dumps(event | {"type": "payment_intent.succeeded", "id": "evt_forged"}).encode()
    forged = httpx.post(
        f"{live_server_url.url}/billing/webhooks/stripe",
        content=tampered,
        headers={"Stripe-Signature": stripe_signature(body)},  # the signature of another body
        timeout=10,
    )
    assert forged.status_code == 400
    unsigned = httpx.post(f"{live_server_url.url}/billing/webhooks/stripe", content=body, timeout=10)
    assert unsigned.status_code == 400
    assert unsigned.json()["error"]["message"] == "Missing Stripe-Signature header"
    assert httpx.get(f"{live_server_url.url}/billing/webhooks/stripe", timeout=10).status_code == 405
    assert not WebhookEvent.objects.exists()
    assert Purchase.objects.get(id=purchase.id).status == "pending"
    assert Account.objects.get(id=account.id).balance == 0
    # The genuine event still works afterwards.
    assert post_stripe_event(live_server_url, body).status_code == 200
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_webhook_for_an_unknown_payment_is_refused(stripe_webhooks, live_server_url):
    event = {
        "id": "evt_unknown_payment",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_not_ours", "object": "payment_intent", "amount": 1080, "currency": "usd", "metadata": {}}},
    }
    response = post_stripe_event(live_server_url, event)
    assert response.status_code == 400
    assert "unknown payment" in response.json()["error"]["message"].lower() or "No purchase" in response.text
    stored = WebhookEvent.objects.get(event_id="evt_unknown_payment")
    assert stored.status == "failed" and "No purchase" in stored.error
    assert not LedgerEntry.objects.exists()
    assert_ledger_ok()


def test_amount_or_currency_that_do_not_match_grant_nothing(stripe_webhooks, live_server_url):
    account, purchase, event = paid_without_webhook(stripe_webhooks, live_server_url)
    cheaper = json.loads(json.dumps(event))
    cheaper["id"] = "evt_cheaper"
    cheaper["data"]["object"]["amount"] = 1
    assert post_stripe_event(live_server_url, cheaper).status_code == 400
    euros = json.loads(json.dumps(event))
    euros["id"] = "evt_euros"
    euros["data"]["object"]["currency"] = "eur"
    assert post_stripe_event(live_server_url, euros).status_code == 400
    assert Purchase.objects.get(id=purchase.id).status == "pending"
    assert Account.objects.get(id=account.id).balance == 0
    assert post_stripe_event(live_server_url, event).status_code == 200
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_out_of_order_events_are_harmless(stripe_webhooks, live_server_url):
    account, purchase, succeeded = paid_without_webhook(stripe_webhooks, live_server_url)
    failed = json.loads(json.dumps(succeeded))
    failed["id"] = "evt_failed_first"
    failed["type"] = "payment_intent.payment_failed"
    failed["data"]["object"]["last_payment_error"] = {"message": "Your card has insufficient funds."}
    # A failure reported before the success (e.g. a first attempt): the purchase fails ...
    assert post_stripe_event(live_server_url, failed).status_code == 200
    assert Purchase.objects.get(id=purchase.id).status == "failed"
    # ... and the success that follows still grants the credits: money that arrived is never lost.
    assert post_stripe_event(live_server_url, succeeded).status_code == 200
    assert Purchase.objects.get(id=purchase.id).status == "succeeded"
    # A failure reported after the success changes nothing.
    late = failed | {"id": "evt_failed_late"}
    assert post_stripe_event(live_server_url, late).status_code == 200
    assert Purchase.objects.get(id=purchase.id).status == "succeeded"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_event_found_by_metadata_when_it_outruns_the_purchase_request(stripe_webhooks, live_server_url):
    account, purchase, event = paid_without_webhook(stripe_webhooks, live_server_url)
    # As if the webhook arrived before the purchase request stored the payment's id.
    Purchase.objects.filter(id=purchase.id).update(stripe_payment_intent_id=None)
    assert post_stripe_event(live_server_url, event).status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == "succeeded" and purchase.stripe_payment_intent_id == event["data"]["object"]["id"]
    assert_ledger_ok()


def test_unexpected_failure_answers_500_and_the_retry_succeeds(stripe_webhooks, live_server_url, monkeypatch):
    account, purchase, event = paid_without_webhook(stripe_webhooks, live_server_url)
    from billing import webhooks

    real = webhooks.purchase_succeed
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(webhooks, "purchase_succeed", flaky)
    first = post_stripe_event(live_server_url, event)
    assert first.status_code == 500
    assert "Traceback" not in first.text and first.json()["error"]["code"] == 500
    stored = WebhookEvent.objects.get(event_id=event["id"])
    assert (stored.status, stored.attempts) == ("failed", 1) and "database went away" in stored.error
    assert Account.objects.get(id=account.id).balance == 0  # the failed attempt rolled back
    retry = post_stripe_event(live_server_url, event)  # Stripe retries
    assert retry.status_code == 200
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.error) == ("processed", 2, "")
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_other_event_types_are_stored_and_ignored(stripe_webhooks, live_server_url):
    event = {"id": "evt_customer", "type": "customer.created", "created": int(time.time()), "data": {"object": {"id": "cus_x"}}}
    response = post_stripe_event(live_server_url, event)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert post_stripe_event(live_server_url, event).json()["duplicate"] is True
    assert WebhookEvent.objects.get(event_id="evt_customer").status == "ignored"
    assert_ledger_ok()


def test_localstripe_delivers_signed_events_end_to_end(stripe_webhooks, live_server_url):
    account = make_account(credits="0")
    save_card(stripe_webhooks, account)
    purchase = services.card_purchase_start(account=account, amount="5").purchase
    wait_purchase(purchase.id)
    event = WebhookEvent.objects.get(source="stripe", type="payment_intent.succeeded", payload__data__object__id=purchase.stripe_payment_intent_id)
    assert event.status == "processed" and event.event_id.startswith("evt_")
    assert_ledger_ok()
