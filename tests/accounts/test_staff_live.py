"""Staff actions through the real parts: the live gateway (key disable, outages), localstripe (late refunds,
receipts), the ledger invariants after each."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry
from billing.models import CreditLot, LedgerEntry, Purchase, Refund
from billing.money import usd_to_nanos
from tests.accounts.staff_helpers import make_staff, page_messages, post_action
from tests.billing.stripe_helpers import assert_ledger_ok, buy
from tests.factories import make_account, make_key
from tests.routing.test_chat_completions import chat, multi_provider_model
from tests.routing.test_chat_completions import chat as chat_once

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_disabled_key_gets_401_at_once_and_works_again_when_enabled(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    assert chat(gateway, bundle, model=slug, max_tokens=5).status_code == 200  # now cached by the gateway
    client = client_for(make_staff())
    url = reverse("staff:key-disabled", args=[bundle.account.id, bundle.key.id])
    post_action(client, url, disabled="1", reason="leaked")
    refused = chat(gateway, bundle, model=slug, max_tokens=5)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "This API key is disabled"
    post_action(client, url, disabled="0", reason="false alarm")
    assert chat(gateway, bundle, model=slug, max_tokens=5).status_code == 200
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == ["key_disable", "key_enable"]


def test_a_lead_declares_an_endpoint_and_a_provider_down_and_routing_skips_them(gateway):
    slug, endpoints = multi_provider_model(min_endpoints=2)
    asked = iter(range(100))

    def chat(server, bundle, **body):  # a new conversation each time: no sticky (prompt-cache) routing
        body.setdefault("messages", [{"role": "user", "content": f"Question number {next(asked)}?"}])
        return chat_once(server, bundle, **body)

    cheapest, second = endpoints[0], endpoints[1]
    bundle = make_key(credits="5")
    first = chat(gateway, bundle, model=slug, max_tokens=5)
    assert first.status_code == 200 and first.json()["provider"] == cheapest.provider.name

    support = client_for(make_staff())
    form = {"kind": "endpoint", "id": str(cheapest.id), "down": "1", "reason": "provider incident"}
    assert "Only a support lead can declare an outage." in page_messages(post_action(support, reverse("staff:outage"), **form))
    lead = client_for(make_staff("lead"))
    post_action(lead, reverse("staff:outage"), **form)
    cheapest.refresh_from_db()
    assert cheapest.outage
    answer = chat(gateway, bundle, model=slug, max_tokens=5)
    assert answer.status_code == 200 and answer.json()["provider"] == second.provider.name
    # The model's endpoints show it as down.
    listed = httpx.get(f"{gateway.api}/models/{slug}/endpoints", timeout=10).json()["data"]["endpoints"]
    assert {e["tag"]: e["status"] for e in listed}[cheapest.tag] == -10
    # Pinned to the endpoint that is down: nothing left to route to.
    pinned = chat(gateway, bundle, model=slug, max_tokens=5, provider={"only": [cheapest.provider.slug], "allow_fallbacks": False})
    assert pinned.status_code in (404, 503)

    # A whole provider down; then both cleared.
    post_action(lead, reverse("staff:outage"), kind="provider", id=str(second.provider.id), down="1", reason="incident")
    if len(endpoints) > 2:
        assert chat(gateway, bundle, model=slug, max_tokens=5).json()["provider"] not in (cheapest.provider.name, second.provider.name)
    post_action(lead, reverse("staff:outage"), kind="provider", id=str(second.provider.id), down="0", reason="resolved")
    post_action(lead, reverse("staff:outage"), kind="endpoint", id=str(cheapest.id), down="0", reason="resolved")
    again = chat(gateway, bundle, model=slug, max_tokens=5)
    assert again.status_code == 200 and again.json()["provider"] == cheapest.provider.name
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["outage_on", "outage_on", "outage_off", "outage_off"]
    assert AuditEntry.objects.filter(account__isnull=False).count() == 0


def test_a_lead_refunds_the_unused_part_after_the_window_through_stripe_without_the_fee(stripe_webhooks, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    account = make_account(credits="1")
    purchase = buy(stripe_webhooks, account, "10")
    CreditLot.objects.filter(purchase=purchase).update(refundable_until=timezone.now() - dt.timedelta(days=3))
    url = reverse("staff:refund", args=[account.id])

    support = client_for(make_staff())
    found = support.get(reverse("staff:search"), {"q": purchase.stripe_payment_intent_id})
    assert found.status_code == 302 and found.url == reverse("staff:account", args=[account.id])
    page = support.get(reverse("staff:account", args=[account.id])).content.decode()
    assert "Refund unused part (late)" not in page
    assert "payment_intent.succeeded" in page and purchase.stripe_payment_intent_id in page  # its webhook and state
    response = post_action(support, url, purchase_id=str(purchase.id), reason="goodwill")
    assert "Only a support lead can refund outside the 24-hour window." in page_messages(response)
    assert not Refund.objects.exists()

    lead = client_for(make_staff("lead"))
    assert "Refund unused part (late)" in lead.get(reverse("staff:account", args=[account.id])).content.decode()
    response = post_action(lead, url, purchase_id=str(purchase.id), reason="")
    assert "A reason is required." in page_messages(response)
    form_token = "a" * 32
    response = post_action(lead, url, purchase_id=str(purchase.id), reason="goodwill, ticket 12", idempotency_key=form_token)
    assert "Refunded $10.00 to the card (the fee is not refunded)." in page_messages(response)
    post_action(lead, url, purchase_id=str(purchase.id), reason="goodwill, ticket 12", idempotency_key=form_token)  # double click
    [refund] = Refund.objects.all()
    assert (refund.status, refund.amount_cents) == ("succeeded", 1000)
    assert [r["amount"] for r in stripe_webhooks.refunds(payment_intent=purchase.stripe_payment_intent_id)] == [1000]
    assert Purchase.objects.get(id=purchase.id).status == "refunded"
    account.refresh_from_db()
    assert account.balance == usd_to_nanos("1")
    [audit] = AuditEntry.objects.all()
    assert (audit.action, audit.amount, audit.before, audit.after) == (
        "refund", -usd_to_nanos("10"), {"balance": usd_to_nanos("11")}, {"balance": usd_to_nanos("1"), "refund_cents": 1000}
    )
    assert LedgerEntry.objects.get(idempotency_key=f"refund:{refund.id}").amount == -usd_to_nanos("10")
    # Nothing left: a second attempt is refused with the reason.
    response = post_action(lead, url, purchase_id=str(purchase.id), reason="again")
    assert "already refunded" in " ".join(page_messages(response))
    # Goodwill grants are never refundable: no purchase, so not even offered.
    assert_ledger_ok()

    # And the receipt can be resent (after the commit).
    post_action(support, reverse("staff:notice", args=[account.id]), kind="receipt", purchase_id=str(purchase.id), reason="lost it")
    assert [m.subject for m in mail.outbox] == [f"Your receipt for purchase #{purchase.id}"]
    assert "$10.80" in mail.outbox[0].body
