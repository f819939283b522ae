"""The credits pages: signup allowance, balance, buying (card and crypto), receipts, refunds, auto top-up,
the 1% discount, and the support and admin views of the ledger."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import Account
from accounts.selectors import account_for_user
from billing import services
from billing.models import BillingProfile, CreditLot, LedgerEntry, Purchase
from billing.money import usd_to_nanos
from tests.billing.stripe_helpers import assert_ledger_ok, buy, save_card
from tests.factories import make_account
from tests.localstripe_process import CARD_OK

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(account: Account, *, staff: bool = False) -> Client:
    if staff:
        get_user_model().objects.filter(id=account.owner_id).update(is_staff=True, is_superuser=True)
        account.owner.refresh_from_db()
    client = Client()
    client.force_login(account.owner)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_pages_need_a_signed_in_user(transactional_db):
    client = Client()
    for url in ("/settings/credits", "/settings/credits/receipts/1", "/settings/credits/quote?amount=10"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.post("/settings/credits/card/purchase", {"amount": "10"}).status_code == 302


def test_signup_allowance_only_once_the_email_is_verified_and_only_once(transactional_db, settings, mailoutbox):
    settings.SIGNUP_FREE_CREDITS_USD = "0.25"
    client = Client()
    response = client.post(
        "/accounts/signup/", {"email": "new@example.com", "password1": "a-long-passphrase", "password2": "a-long-passphrase"}
    )
    assert response.status_code == 302 and response["Location"] == "/settings/credits"
    user = get_user_model().objects.get(email="new@example.com")
    account = account_for_user(user=user)
    # Signed up and signed in, but unverified: no promotional credits yet.
    assert not CreditLot.objects.filter(account=account).exists()
    assert Account.objects.get(id=account.id).balance == 0
    assert "$0.00" in client.get("/settings/credits").content.decode()

    [mail] = mailoutbox
    link = re.search(r"https?://\S+(/accounts/confirm-email/\S+)", mail.body).group(1)
    assert client.post(link).status_code == 302
    lot = CreditLot.objects.get(account=account)
    assert (lot.source, lot.amount, lot.refundable_until) == ("promotional", usd_to_nanos("0.25"), None)
    # Verifying again, or a second address, grants nothing more.
    client.post(link)
    second = EmailAddress.objects.create(user=user, email="second@example.com", verified=False, primary=False)
    second.send_confirmation(signup=False)
    second_link = re.search(r"https?://\S+(/accounts/confirm-email/\S+)", mailoutbox[-1].body).group(1)
    assert client.post(second_link).status_code == 302
    assert EmailAddress.objects.get(email="second@example.com").verified
    assert CreditLot.objects.filter(account=account).count() == 1
    assert services.signup_allowance_grant(account=account).idempotency_key == f"signup:{account.id}"
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("0.25")
    page = client.get("/settings/credits")
    assert page.status_code == 200 and "$0.25" in page.content.decode()
    assert_ledger_ok()


def test_an_unverified_account_never_gets_the_allowance_from_signup_alone(transactional_db, settings, mailoutbox):
    settings.SIGNUP_FREE_CREDITS_USD = "0.25"
    for n in range(3):
        email = f"farm{n}@example.com"
        Client().post("/accounts/signup/", {"email": email, "password1": "a-long-passphrase", "password2": "a-long-passphrase"})
    assert get_user_model().objects.filter(email__startswith="farm").count() == 3
    assert len(mailoutbox) == 3
    assert not LedgerEntry.objects.filter(idempotency_key__startswith="signup:").exists()
    assert_ledger_ok()


def test_credits_page_shows_balance_purchases_receipts_and_refund_choices(stripe_webhooks, live_server_url):
    account = make_account(credits="2")
    card = buy(stripe_webhooks, account, "10")
    crypto = services.crypto_purchase_start(account=account, amount="5")
    client = signed_in(account)
    response = client.get("/settings/credits")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="balance">$12.00<' in html
    assert f'src="{stripe_webhooks.url}/js.stripe.com/v3/"' in html  # localstripe's Stripe.js stand-in
    assert "Pending purchases" in html and crypto.crypto_hosted_url in html
    assert "Refund $10.00" in html and f"/settings/credits/purchases/{card.id}/refund" in html
    assert f"/settings/credits/receipts/{card.id}" in html
    assert "Pay with your saved visa card ending <b>4242</b>" in html
    assert "The 1% discount is off" in html and "/settings/privacy" in html and "Auto top-up" in html
    assert "Credits <b id=\"q-credits\">$10.00</b> + fee <b id=\"q-fee\">$0.80</b>" in html

    receipt = client.get(f"/settings/credits/receipts/{card.id}").content.decode()
    assert "$10.00" in receipt and "$0.80" in receipt and "$10.80" in receipt and card.stripe_payment_intent_id in receipt
    assert "Refundable until" in receipt and "Expires" in receipt
    stranger = signed_in(make_account(credits="0"))
    assert stranger.get(f"/settings/credits/receipts/{card.id}").status_code == 404
    assert stranger.get(f"/settings/credits/purchases/{card.id}/status").status_code == 404
    assert_ledger_ok()


def test_live_fee_preview(transactional_db):
    client = signed_in(make_account(credits="0"))
    assert client.get("/settings/credits/quote?amount=20").json() == {"method": "card", "credits": "20.00", "fee": "1.10", "total": "21.10"}
    assert client.get("/settings/credits/quote?amount=20&method=crypto").json()["fee"] == "1.00"
    bad = client.get("/settings/credits/quote?amount=abc")
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("The amount must be a number")
    assert "minimum purchase" in client.get("/settings/credits/quote?amount=1").json()["error"]["message"]


def test_buying_by_card_through_the_page_endpoints(stripe_webhooks, live_server_url):
    account = make_account(credits="0")
    client = signed_in(account)
    # No card yet: a clear 400.
    refused = client.post("/settings/credits/card/purchase", {"amount": "10"})
    assert refused.status_code == 400 and "Add a card first" in refused.json()["error"]["message"]
    # What the page's script does: SetupIntent, Stripe.js confirmCardSetup, record the card, pay.
    setup = client.post("/settings/credits/card/setup").json()
    assert setup["client_secret"].startswith(setup["setup_intent_id"])
    assert stripe_webhooks.confirm_card_setup(setup["client_secret"], card=CARD_OK)["status"] == "succeeded"
    assert client.post("/settings/credits/card/confirm", {"setup_intent_id": setup["setup_intent_id"]}).json() == {
        "brand": "visa",
        "last4": "4242",
    }
    bad = client.post("/settings/credits/card/purchase", {"amount": "ten"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400
    paid = client.post("/settings/credits/card/purchase", {"amount": "12.50"})
    assert paid.status_code == 201, paid.content
    body = paid.json()
    assert (body["status"], body["credits"], body["fee"], body["total"], body["client_secret"]) == (
        "pending", "12.50", "0.80", "13.30", ""
    )
    deadline = time.monotonic() + 15
    while client.get(f"/settings/credits/purchases/{body['id']}/status").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the webhook never arrived"
        time.sleep(0.1)
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("12.50")
    assert_ledger_ok()


def test_someone_elses_card_setup_cannot_be_used(stripe_webhooks):
    owner = signed_in(make_account(credits="0"))
    setup = owner.post("/settings/credits/card/setup").json()
    stripe_webhooks.confirm_card_setup(setup["client_secret"])
    thief_account = make_account(credits="0")
    thief = signed_in(thief_account)
    thief.post("/settings/credits/card/setup")  # has a Stripe customer of its own
    stolen = thief.post("/settings/credits/card/confirm", {"setup_intent_id": setup["setup_intent_id"]})
    assert stolen.status_code == 400 and stolen.json()["error"]["message"] == "Unknown card setup."
    assert not BillingProfile.objects.get(account=thief_account).default_payment_method_id


def test_refund_from_the_page_and_its_refusal_reason(stripe_webhooks):
    account = make_account(credits="0")
    purchase = buy(stripe_webhooks, account, "10")
    client = signed_in(account)
    done = client.post(f"/settings/credits/purchases/{purchase.id}/refund", follow=True)
    assert "Refunded $10.00 to your card (the fee is not refunded)." in messages_of(done)
    again = client.post(f"/settings/credits/purchases/{purchase.id}/refund", follow=True)
    assert messages_of(again) == ["This purchase was already refunded."]

    late = buy(stripe_webhooks, account, "5")
    CreditLot.objects.filter(purchase=late).update(refundable_until=timezone.now() - dt.timedelta(minutes=1))
    page = client.get("/settings/credits").content.decode()
    assert "Refunds are possible within 24 hours of a purchase" in page
    refused = client.post(f"/settings/credits/purchases/{late.id}/refund", follow=True)
    assert "within 24 hours" in messages_of(refused)[0]
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("5")
    assert_ledger_ok()


def test_crypto_purchase_from_the_page_goes_to_the_hosted_page(transactional_db):
    account = make_account(credits="0")
    client = signed_in(account)
    response = client.post("/settings/credits/crypto/purchase", {"amount": "10"})
    purchase = Purchase.objects.get(account=account)
    assert response.status_code == 302 and response["Location"] == purchase.crypto_hosted_url
    hosted = client.get(purchase.crypto_hosted_url).content.decode()
    assert "10.50 USDC" in hosted and "simulated" in hosted
    crypto_refusal = client.post("/settings/credits/crypto/purchase", {"amount": "3"}, follow=True)
    assert messages_of(crypto_refusal) == ["The minimum purchase is $5.00"]


def test_auto_top_up_and_discount_settings_from_the_page(stripe_webhooks):
    account = make_account(credits="0")
    client = signed_in(account)
    no_card = client.post("/settings/credits/auto-topup", {"enabled": "on", "threshold": "5", "amount": "25"}, follow=True)
    assert messages_of(no_card) == ["Save a card before turning on auto top-up."]
    save_card(stripe_webhooks, account)
    saved = client.post("/settings/credits/auto-topup", {"enabled": "on", "threshold": "3.50", "amount": "40"}, follow=True)
    assert messages_of(saved) == ["Auto top-up settings saved."]
    profile = BillingProfile.objects.get(account=account)
    assert (profile.auto_topup_enabled, profile.auto_topup_threshold, profile.auto_topup_amount) == (
        True, usd_to_nanos("3.5"), usd_to_nanos("40")
    )
    page = client.get("/settings/credits").content.decode()
    assert 'name="threshold" value="3.50"' in page and 'name="amount" value="40.00"' in page

    assert not Account.objects.get(id=account.id).allow_training_discount
    on = client.post("/settings/credits/privacy", {"allow_training_discount": "on"}, follow=True)
    assert messages_of(on) == ["The 1% discount is on."]
    assert Account.objects.get(id=account.id).allow_training_discount
    client.post("/settings/credits/privacy", {})
    assert not Account.objects.get(id=account.id).allow_training_discount


def test_support_staff_see_any_accounts_ledger(stripe_webhooks):
    customer = make_account(email="customer@example.com", credits="3")
    buy(stripe_webhooks, customer, "10")
    assert signed_in(make_account(credits="0")).get(f"/staff/ledger/{customer.id}").status_code == 404  # not staff
    staff = signed_in(make_account(credits="0"), staff=True)
    # The old support ledger folded into the staff console (accounts/staff/): its addresses lead there.
    found = staff.get("/staff/ledger", {"q": "customer@example.com"}, follow=True)
    assert found.redirect_chain[-1][0] == f"/staff/accounts/{customer.id}"
    assert staff.get(f"/staff/ledger/{customer.id}")["Location"] == f"/staff/accounts/{customer.id}/ledger"
    page = staff.get(f"/staff/accounts/{customer.id}/ledger").content.decode()
    for entry in LedgerEntry.objects.filter(account=customer):
        assert entry.idempotency_key in page
    assert "ok (balance = ledger = lots)" in page and "13.000000000" in page


def test_admin_shows_billing_read_only(stripe_webhooks):
    customer = make_account(credits="3")
    buy(stripe_webhooks, customer, "10")
    admin = signed_in(make_account(credits="0"), staff=True)
    for model in ("ledgerentry", "purchase", "creditlot", "refund", "webhookevent", "billingprofile"):
        assert admin.get(f"/admin/billing/{model}/").status_code == 200, model
        assert admin.get(f"/admin/billing/{model}/add/").status_code == 403, model
    entry = LedgerEntry.objects.filter(account=customer).first()
    detail = admin.get(f"/admin/billing/ledgerentry/{entry.id}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert admin.post(f"/admin/billing/ledgerentry/{entry.id}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(id=entry.id).exists()


def test_pending_purchase_status_is_visible(stripe_webhooks, live_server_url):
    account = make_account(credits="0")
    client = signed_in(account)
    purchase = services.crypto_purchase_start(account=account, amount="7")
    status = client.get(f"/settings/credits/purchases/{purchase.id}/status").json()
    assert (status["status"], status["method"], status["total"]) == ("pending", "crypto", "7.35")


def test_home_page_is_a_landing_page_signed_out_and_links_to_credits_signed_in(client):
    response = client.get("/")
    assert response.status_code == 200 and b"/accounts/signup/" in response.content
    account = make_account(credits="3")
    signed = signed_in(account)
    overview = signed.get("/")
    assert overview.status_code == 200 and b"/settings/credits" in overview.content and b"$3.00" in overview.content


def test_history_shows_a_daily_usage_row_and_the_totals_add_up(gateway):
    """Usage from real requests shows as one row per UTC day beside the grants, and credits − usage ==
    balance on the page to the nano-dollar (nothing is rounded away)."""
    from billing.settlement import settlement_flush
    from billing.templatetags.money_tags import usd_full
    from tests.factories import make_key
    from tests.routing.test_chat_completions import chat

    bundle = make_key(credits="3")
    for _ in range(2):
        assert chat(gateway, bundle, model="openai/gpt-4o-mini", max_tokens=20).status_code == 200
    assert settlement_flush(15)
    account = Account.objects.get(id=bundle.account.id)
    spent = sum(LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE).values_list("amount", flat=True))
    assert spent < 0
    client = Client()
    client.force_login(account.owner)
    page = client.get("/settings/credits").content.decode()
    usage_rows = re.findall(r'<tr class="usage-row"><td>([0-9-]+)</td><td>([^<]*)</td><td class="num"[^>]*>([^<]*)</td>', page)
    assert len(usage_rows) == 1, usage_rows  # both requests on one UTC day
    assert usage_rows[0][2] == usd_full(spent)
    credits = re.search(r'data-testid="total-credits">([^<]*)<', page).group(1)
    usage = re.search(r'data-testid="total-usage">− ([^<]*)<', page).group(1)
    balance = re.search(r'data-testid="balance-exact"><b>([^<]*)<', page).group(1)
    assert credits == usd_full(3 * 10**9) and usage == usd_full(-spent) and balance == usd_full(3 * 10**9 + spent)
    assert account.balance == 3 * 10**9 + spent
