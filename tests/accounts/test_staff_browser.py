"""The support journey in a real browser (Debian's Chromium driven by Playwright) against the live server.

A support person signs in, finds an account by a generation id, grants $5 with a reason, the user sees
it on their credits page, the support person disables a key, the key is refused by the API at once,
and the audit log lists both actions under the staff member's name. Screenshots (desktop and 390 px
wide) go to var/test-screenshots/.
"""

from __future__ import annotations

import re

import httpx
import pytest

from accounts.models import AuditEntry
from activity.models import Generation
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from tests.accounts.staff_helpers import PASSWORD, make_staff
from tests.browser import REQUIRED, SCREENSHOTS
from tests.factories import make_key
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture
def contexts(browser, live_server_url):
    made = []
    errors: list[str] = []

    def new(width: int = 1280):
        context = browser.new_context(base_url=live_server_url.url, viewport={"width": width, "height": 900})
        context.set_default_timeout(15_000)
        made.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield new
    for context in made:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form:has(input[name=password]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))


def shoot(page, name: str) -> None:
    """The same page at desktop width and at 390 px."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(SCREENSHOTS / f"staff-{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / f"staff-{name}-390.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert width <= 390, f"{name}: the page is {width}px wide at 390px (tables must scroll inside their card)"


def test_support_finds_an_account_by_generation_grants_credits_and_disables_a_key(gateway, contexts):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="2", name="production")
    spare = make_key(account=bundle.account, name="laptop")
    owner = bundle.account.owner
    owner.set_password(PASSWORD)
    owner.save()
    assert chat(gateway, bundle, model=slug, max_tokens=5).status_code == 200
    assert settlement_flush(15)
    generation = Generation.objects.get(account=bundle.account)
    staff = make_staff(email="sam.support@staff.example.com")

    page = contexts()
    sign_in(page, staff.email)
    page.get_by_role("link", name="Staff").click()
    page.wait_for_url("**/staff/")
    shoot(page, "search")
    page.fill("#lookup input[name=q]", generation.id)
    page.locator("#lookup button").click()
    page.wait_for_url(f"**/staff/accounts/{bundle.account.id}")
    expect(page.locator("[data-testid=account-email]")).to_have_text(owner.email)
    expect(page.locator(f"#generations tr[data-generation='{generation.id}']")).to_be_visible()
    expect(page.locator("#keys")).to_contain_text("production")

    # Grant $5 with a reason.
    form = page.locator("#adjust form")
    form.locator("input[name=amount]").fill("5")
    form.locator("input[name=user_reason]").fill("sorry for the outage")
    form.locator("textarea[name=reason]").fill("ticket 4711: provider outage, internal")
    form.locator("input[name=ticket]").fill("4711")
    form.get_by_role("button", name="Apply adjustment").click()
    expect(page.locator(".messages")).to_contain_text("Granted $5.00")
    bundle.account.refresh_from_db()
    assert bundle.account.balance == usd_to_nanos("7") - generation.cost
    expect(page.locator("[data-testid=staff-balance]")).to_contain_text(f"${bundle.account.balance / 10**9:.9f}")
    shoot(page, "account")

    # The user sees it in their credit history (not the internal note).
    user_page = contexts()
    sign_in(user_page, owner.email)
    expect(user_page.locator("body")).to_contain_text("support adjustment: sorry for the outage")
    expect(user_page.locator("body")).not_to_contain_text("internal")

    # Disable the key: refused by the API at once.
    row = page.locator(f"#keys tr[data-key='{bundle.key.hash}']")
    row.locator("input[name=reason]").fill("leaked in a public repo")
    row.get_by_role("button", name="Disable").click()
    expect(page.locator(".messages")).to_contain_text("is disabled, on every gateway process")
    expect(page.locator(f"#keys tr[data-key='{bundle.key.hash}'] .badge")).to_have_text("disabled")
    refused = httpx.post(f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
                         json={"model": slug, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401
    assert chat(gateway, spare, model=slug, max_tokens=5).status_code == 200  # the account's other key still works

    # The audit log lists both, under the staff member's name.
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.wait_for_url("**/staff/audit")
    log = page.locator("#audit-log")
    for action in ("credit_grant", "key_disable"):
        expect(log.locator(f"tr[data-audit={action}]")).to_contain_text("sam.support@staff.example.com")
    expect(log.locator("tr[data-audit=credit_grant]")).to_contain_text("4711")
    shoot(page, "audit")
    assert list(AuditEntry.objects.order_by("id").values_list("action", "staff_name")) == [
        ("credit_grant", staff.email), ("key_disable", staff.email)
    ]
    settlement_flush(15)
    assert ledger_drift() == []


def test_a_bad_amount_in_the_browser_is_a_message_and_a_non_staff_user_gets_404(gateway, contexts):
    bundle = make_key(credits="1")
    owner = bundle.account.owner
    owner.set_password(PASSWORD)
    owner.save()
    staff = make_staff("lead")
    page = contexts(390)
    sign_in(page, staff.email)
    page.goto(f"/staff/accounts/{bundle.account.id}")
    form = page.locator("#adjust form")
    form.locator("input[name=amount]").fill("1e999999")
    form.locator("input[name=user_reason]").fill("x")
    form.locator("textarea[name=reason]").fill("y")
    form.get_by_role("button", name="Apply adjustment").click()
    expect(page.locator(".messages")).to_contain_text("Enter a positive amount in US dollars")
    page.goto("/staff/catalog")
    shoot(page, "catalog")
    assert not AuditEntry.objects.exists()

    user_page = contexts()
    sign_in(user_page, owner.email)
    expect(user_page.get_by_role("link", name="Staff")).to_have_count(0)
    response = user_page.goto(f"/staff/accounts/{bundle.account.id}")
    assert response.status == 404
