"""The credits pages in a real browser (Chromium driven by Playwright) against the live server and localstripe.

A user signs up, verifies the email address (the link from the mail outbox), sees the promotional allowance, buys credits by card through localstripe's Stripe.js
stand-in (its card element is plain text inputs), waits for the webhook, refunds, and mistypes amounts.

Chromium is Debian's package (Playwright's own browser download is not used); without a ``chromium``
binary these tests are skipped. CI (``.ci/run``) installs it and sets BROWSER_TESTS_REQUIRED=1, so there a
missing browser fails them instead.
"""

from __future__ import annotations

import itertools
import re

import pytest

from accounts.models import Account
from accounts.selectors import account_for_user
from billing.models import BillingProfile, Purchase
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift, purchase_drift
from tests.browser import REQUIRED, SCREENSHOTS
from tests.localstripe_process import CARD_OK

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_MS = 15_000  # the longest the webhook is waited for (it usually arrives in ~1 s); other waits: expect's 5 s
PASSWORD = "a-long-passphrase-for-tests"
_emails = itertools.count(1)


if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture
def page(browser, request, live_server_url, settings):
    """A fresh browser context (no cookies) per test; a screenshot goes to var/ when the test fails."""
    settings.SIGNUP_FREE_CREDITS_USD = "0.25"
    context = browser.new_context(base_url=live_server_url.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The Content-Security-Policy refuses inline scripts and handlers: a violation is logged on the console.
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_up(page, *, verify: bool = True) -> Account:
    """Through allauth's signup page, as a person would; it lands on the credits page. With ``verify`` the
    user then follows the verification link from the email (which grants the promotional allowance)."""
    email = f"browser{next(_emails)}@example.com"
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form:has(input[name=password2]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))
    from django.contrib.auth import get_user_model

    if verify:
        verify_email(page, email)
    return account_for_user(user=get_user_model().objects.get(email=email))


def verification_link(email: str) -> str:
    """The link in the last verification mail sent to ``email`` (the tests' mail backend keeps an outbox)."""
    from django.core import mail

    sent = [m for m in mail.outbox if email in m.to]
    assert sent, f"no verification mail to {email}"
    return re.search(r"https?://\S+/accounts/confirm-email/\S+", sent[-1].body).group(0)


def verify_email(page, email: str) -> None:
    page.goto(verification_link(email))
    page.locator("main form [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))


def fill_card(page, number: str = CARD_OK) -> None:
    """localstripe's card element: plain inputs (number, exp_month, exp_year as two digits, cvc, postal_code)."""
    box = page.locator("#card-element")
    box.locator("input[placeholder=number]").fill(number)
    box.locator("input[placeholder=exp_month]").fill("12")
    box.locator("input[placeholder=exp_year]").fill("34")
    box.locator("input[placeholder=cvc]").fill("123")
    box.locator("input[placeholder=postal_code]").fill("10001")


def set_amount(page, amount: str) -> None:
    """Type an amount the way a person does (input events drive the live fee preview)."""
    page.locator("#amount").fill("")
    page.locator("#amount").press_sequentially(amount)


def buy_ten_dollars(page, account: Account) -> Purchase:
    set_amount(page, "10")
    expect(page.locator("#quote")).to_be_visible()
    expect(page.locator("#q-credits")).to_have_text("$10.00")
    expect(page.locator("#q-fee")).to_have_text("$0.80")  # 5.5% of $10 is $0.55: the $0.80 minimum applies
    expect(page.locator("#q-total")).to_have_text("$10.80")
    assert not Purchase.objects.filter(account=account).exists()  # the fee is shown before anything is charged
    fill_card(page)
    page.click("#pay-card")
    # The page polls the purchase until localstripe's webhook has granted the credits, then reloads itself.
    expect(page.locator("#pay-status")).to_contain_text("Payment received: $10.00 of credits added.", timeout=WAIT_MS)
    expect(page.locator("[data-testid=balance]")).to_have_text("$10.25", timeout=WAIT_MS)
    return Purchase.objects.get(account=account)


def assert_ledger_ok() -> None:
    assert ledger_drift() == []
    assert purchase_drift() == []


def test_signup_lands_on_the_credits_page_and_verifying_the_email_grants_the_allowance_once(page):
    account = sign_up(page, verify=False)
    expect(page.locator("h1")).to_have_text("Credits")
    expect(page.locator("[data-testid=balance]")).to_have_text("$0.00")  # not before the address is verified
    assert Account.objects.get(id=account.id).balance == 0
    verify_email(page, account.owner.email)
    expect(page.locator("[data-testid=balance]")).to_have_text("$0.25")
    page.goto(verification_link(account.owner.email))  # the link again: already verified, nothing more
    page.goto("/settings/credits")
    expect(page.locator("[data-testid=balance]")).to_have_text("$0.25")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "credits-after-verification.png"), full_page=True)
    expect(page.locator("#lots")).to_contain_text("Promotional")
    expect(page.locator("#history")).to_contain_text("No purchases yet.")
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("0.25")
    assert_ledger_ok()


def test_buy_credits_by_card_shows_the_fee_and_the_credits_arrive(page, stripe_webhooks):
    account = sign_up(page)
    purchase = buy_ten_dollars(page, account)
    assert purchase.status == Purchase.Status.SUCCEEDED and purchase.total_cents == 1080
    customer = BillingProfile.objects.get(account=account).stripe_customer_id
    assert [pi["amount"] for pi in stripe_webhooks.payment_intents(customer=customer)] == [1080]

    row = page.locator(f"#history tr[data-purchase='{purchase.id}']")
    expect(row).to_contain_text("$10.00")
    expect(row).to_contain_text("$0.80")
    expect(row).to_contain_text("$10.80")
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row.get_by_role("button", name="Refund $10.00")).to_be_visible()
    expect(page.locator("#card-pay")).to_contain_text("Pay with your saved visa card ending 4242")

    row.get_by_role("link", name="receipt").click()
    page.wait_for_url(f"**/settings/credits/receipts/{purchase.id}")
    body = page.locator("body")
    for text in ("$10.00", "$0.80", "$10.80", purchase.stripe_payment_intent_id):
        expect(body).to_contain_text(text)
    assert_ledger_ok()


def test_refund_a_purchase_from_the_page_within_24_hours(page, stripe_webhooks):
    account = sign_up(page)
    purchase = buy_ten_dollars(page, account)
    row = page.locator(f"#history tr[data-purchase='{purchase.id}']")
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row.get_by_role("button", name="Refund $10.00").click()
    expect(page.locator(".messages")).to_contain_text("Refunded $10.00 to your card (the fee is not refunded).")
    assert dialogs == ["Refund $10.00 of unused credits to your card? The fee is not refunded."]
    expect(page.locator("[data-testid=balance]")).to_have_text("$0.25")
    expect(row.locator(".badge")).to_have_text("Refunded")
    expect(row.get_by_role("button", name=re.compile("^Refund"))).to_have_count(0)

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    refunds = stripe_webhooks.refunds(payment_intent=purchase.stripe_payment_intent_id)
    assert [r["amount"] for r in refunds] == [1000]  # the credits, not the fee
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("0.25")
    assert_ledger_ok()


def test_a_bad_amount_shows_a_clear_message_and_charges_nothing(page, stripe_webhooks):
    account = sign_up(page)
    quote, error = page.locator("#quote"), page.locator("#quote-error")

    set_amount(page, "1")
    expect(error).to_be_visible()
    expect(error).to_contain_text("minimum purchase is $5.00")
    expect(quote).to_be_hidden()

    set_amount(page, "ten")
    expect(error).to_contain_text("The amount must be a number")
    expect(quote).to_be_hidden()

    # Paying anyway is refused with the same message: no card is saved or charged, no purchase is recorded.
    fill_card(page)
    page.click("#pay-card")
    expect(page.locator("#pay-status")).to_contain_text("The amount must be a number")
    set_amount(page, "1")
    page.click("#pay-card")
    expect(page.locator("#pay-status")).to_contain_text("minimum purchase is $5.00")
    expect(page.locator("#pay-card")).to_be_enabled()

    # A good amount again: the preview comes back.
    set_amount(page, "20")
    expect(quote).to_be_visible()
    expect(page.locator("#q-total")).to_have_text("$21.10")
    expect(error).to_be_hidden()

    assert not Purchase.objects.filter(account=account).exists()
    # Not even the card is saved: the amount is checked before anything reaches Stripe.
    assert not BillingProfile.objects.filter(account=account).exclude(default_payment_method_id="").exists()
    for profile in BillingProfile.objects.filter(account=account).exclude(stripe_customer_id=""):
        assert stripe_webhooks.payment_intents(customer=profile.stripe_customer_id) == []
    page.reload()
    expect(page.locator("[data-testid=balance]")).to_have_text("$0.25")
    expect(page.locator("#history")).to_contain_text("No purchases yet.")
    assert Account.objects.get(id=account.id).balance == usd_to_nanos("0.25")
    assert_ledger_ok()
