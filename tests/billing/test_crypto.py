"""Crypto (USDC) purchases through the simulated processor: 5% fee, signed webhook, never refundable."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import httpx
import pytest
from django.utils import timezone

from accounts.models import Account
from billing import crypto, services
from billing.errors import RefundRefused
from billing.models import CreditLot, LedgerEntry, Purchase, WebhookEvent
from billing.money import usd_to_nanos
from tests.billing.stripe_helpers import assert_ledger_ok, wait_purchase
from tests.factories import make_account
from tests.live_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def pay_on_hosted_page(server, purchase: Purchase, outcome: str = "pay") -> httpx.Response:
    """The payer on the processor's hosted page (served by the live server): GET it, press a button."""
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as browser:
        page = browser.get(purchase.crypto_hosted_url)
        assert page.status_code == 200 and "USDC" in page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return browser.post(purchase.crypto_hosted_url, data={"csrfmiddlewaretoken": token, "outcome": outcome})


def post_crypto_event(server, event: dict, *, secret: str | None = None, timestamp: int | None = None) -> httpx.Response:
    from django.conf import settings

    body = json.dumps(event).encode()
    header = crypto.signature_header(body, secret or settings.CRYPTO_WEBHOOK_SECRET, timestamp)
    return httpx.post(
        f"{server.url}/billing/webhooks/crypto", content=body, headers={crypto.SIGNATURE_HEADER: header}, timeout=10
    )


def test_crypto_purchase_is_granted_by_the_signed_webhook(live_server_url):
    account = make_account(credits="0")
    purchase = services.crypto_purchase_start(account=account, amount="10")
    assert (purchase.status, purchase.method, purchase.total_cents) == ("pending", "crypto", 1050)  # 5% fee
    assert purchase.fee == usd_to_nanos("0.50") and purchase.crypto_charge_id.startswith("sim_ch_")
    assert Account.objects.get(id=account.id).balance == 0

    response = pay_on_hosted_page(live_server_url, purchase)
    assert response.status_code == 302 and response.headers["location"] == "/settings/credits"
    purchase = wait_purchase(purchase.id)
    lot = CreditLot.objects.get(purchase=purchase)
    assert (lot.source, lot.amount, lot.refundable_until) == ("crypto", usd_to_nanos("10"), None)
    assert LedgerEntry.objects.get(idempotency_key=f"purchase:{purchase.id}").reference == purchase.crypto_charge_id
    assert WebhookEvent.objects.get(source="crypto").status == "processed"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_crypto_is_never_refundable(live_server_url):
    account = make_account(credits="0")
    purchase = services.crypto_purchase_start(account=account, amount="20")
    pay_on_hosted_page(live_server_url, purchase)
    wait_purchase(purchase.id)
    with pytest.raises(RefundRefused, match="Crypto purchases are never refundable"):
        services.purchase_refund(account=account, purchase_id=purchase.id)
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("20")
    assert_ledger_ok()


def test_failed_crypto_payment_grants_nothing(live_server_url):
    account = make_account(credits="0")
    purchase = services.crypto_purchase_start(account=account, amount="10")
    pay_on_hosted_page(live_server_url, purchase, outcome="fail")
    purchase = wait_purchase(purchase.id, status="failed")
    assert purchase.failure_reason
    assert Account.objects.get(id=account.id).balance == 0
    assert_ledger_ok()


def test_crypto_webhooks_are_verified_and_processed_once(live_server_url):
    account = make_account(credits="0")
    purchase = services.crypto_purchase_start(account=account, amount="10")
    event = {
        "id": "evt_sim_manual",
        "type": crypto.CONFIRMED,
        "data": {"id": purchase.crypto_charge_id, "amount_cents": 1050, "metadata": {"purchase_id": str(purchase.id)}},
    }
    assert post_crypto_event(live_server_url, event, secret="forged").status_code == 400
    assert post_crypto_event(live_server_url, event, timestamp=int(time.time()) - 3600).status_code == 400
    unsigned = httpx.post(f"{live_server_url.url}/billing/webhooks/crypto", content=json.dumps(event), timeout=10)
    assert unsigned.status_code == 400
    cheaper = event | {"id": "evt_sim_cheap", "data": event["data"] | {"amount_cents": 100}}
    assert post_crypto_event(live_server_url, cheaper).status_code == 400
    unknown = event | {"id": "evt_sim_unknown", "data": {"id": "sim_ch_nope", "amount_cents": 1050, "metadata": {}}}
    assert post_crypto_event(live_server_url, unknown).status_code == 400
    assert Account.objects.get(id=account.id).balance == 0
    for _ in range(5):
        assert post_crypto_event(live_server_url, event).status_code == 200
    assert LedgerEntry.objects.filter(account=account).count() == 1
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_lost_crypto_webhook_is_recovered_by_the_reconcile_job(live_server_url):
    account = make_account(credits="0")
    purchase = services.crypto_purchase_start(account=account, amount="10")
    processor = crypto.crypto_processor()
    processor.pay(purchase.crypto_charge_id, webhook_url=f"http://127.0.0.1:{free_port()}/lost", background=False)
    assert Purchase.objects.get(id=purchase.id).status == "pending"
    assert services.purchases_reconcile(now=timezone.now() + dt.timedelta(minutes=5)) == {"succeeded": 1}
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("10")
    assert_ledger_ok()


def test_the_hosted_page_of_an_unknown_charge_is_404(live_server_url):
    response = httpx.get(f"{live_server_url.url}/billing/crypto/simulated/sim_ch_unknown", timeout=10)
    assert response.status_code == 404
