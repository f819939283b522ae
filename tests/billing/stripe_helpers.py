"""Helpers for billing tests: a saved card, signed webhooks, waiting for the processor, the invariants."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from django.conf import settings

from accounts.models import Account
from billing import services
from billing.models import BillingProfile, Purchase
from billing.selectors import ledger_drift, purchase_drift
from tests.localstripe_process import CARD_OK, LocalStripeProcess


def save_card(localstripe: LocalStripeProcess, account: Account, card: str = CARD_OK) -> BillingProfile:
    """What the credits page does: SetupIntent, Stripe.js confirmCardSetup, then record the card."""
    intent = services.card_setup_start(account=account)
    confirmed = localstripe.confirm_card_setup(intent.client_secret, card=card)
    assert confirmed["status_code"] == 200, confirmed
    if confirmed["status"] == "requires_action":  # 3-D Secure on setup: the user completes it
        localstripe.client.post(
            f"{localstripe.url}/v1/setup_intents/{intent.id}/confirm",
            content=json.dumps({"key": "pk_test_localstripe", "client_secret": intent.client_secret}),
        )
    return services.card_setup_complete(account=account, setup_intent_id=intent.id)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_purchase(purchase_id: int, status: str = Purchase.Status.SUCCEEDED, timeout: float = 15.0) -> Purchase:
    """Wait until the processor's webhook has moved the purchase to ``status``."""
    return wait_for(
        lambda: Purchase.objects.filter(id=purchase_id, status=status).first(),
        timeout=timeout,
        what=f"purchase {purchase_id} to be {status}",
    )


def assert_ledger_ok() -> None:
    assert ledger_drift() == []
    assert purchase_drift() == []


def stripe_signature(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_stripe_event(server, event: dict[str, Any] | bytes, **signature: Any) -> httpx.Response:
    """Deliver a Stripe event to the live server, signed as Stripe (or localstripe) signs it."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, **signature)}
    return httpx.post(f"{server.url}/billing/webhooks/stripe", content=body, headers=headers, timeout=30)


def succeeded_event(localstripe: LocalStripeProcess, payment_intent_id: str) -> dict[str, Any]:
    """The ``payment_intent.succeeded`` event localstripe emitted for a payment."""
    events = [
        e for e in localstripe.events(type="payment_intent.succeeded") if e["data"]["object"]["id"] == payment_intent_id
    ]
    assert len(events) == 1, events
    return events[0]


@contextlib.contextmanager
def stripe_webhooks_lost(localstripe: LocalStripeProcess, server):
    """localstripe's events of this block never arrive (a webhook lost on the way).

    localstripe sends an event a second after it happened, to the endpoints registered *then*:
    the block's events are dropped by waiting that long before pointing it back at the server.
    """
    from billing.stripe_client import WEBHOOK_EVENTS
    from tests.live_server import free_port

    localstripe.webhook_register(url=f"http://127.0.0.1:{free_port()}/lost", secret="x", events=["none"])
    try:
        yield
    finally:
        time.sleep(1.5)
        localstripe.webhook_register(
            url=f"{server.url}/billing/webhooks/stripe", secret=settings.STRIPE_WEBHOOK_SECRET, events=WEBHOOK_EVENTS
        )


def buy(localstripe: LocalStripeProcess, account: Account, amount: str = "10", card: str = CARD_OK) -> Purchase:
    """A card purchase paid through localstripe, its credits granted by the real webhook."""
    if not BillingProfile.objects.filter(account=account).exclude(default_payment_method_id="").exists():
        save_card(localstripe, account, card=card)
    purchase = services.card_purchase_start(account=account, amount=amount).purchase
    return wait_purchase(purchase.id)
