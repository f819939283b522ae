"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the live server,
the provider simulator and the real settlement path.

The journey: sign up → create a key on the keys page → call the API with it → the request appears in
the activity log by itself (htmx polling) and in the charts → the CSV export has the right row →
privacy "ZDR only" → a non-ZDR request is refused → add a BYOK key → delete the account.
Then screenshots of every page at desktop and phone (390 px) width under var/test-screenshots/.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

import httpx
import pytest

from accounts.models import Account, ApiKey, ProviderKey
from accounts.selectors import account_for_user
from activity.models import Generation
from activity.selectors import rollups_drift
from billing.money import nanos_to_usd_string
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from tests.browser import REQUIRED, SCREENSHOTS

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase-for-tests"
WAIT_MS = 15_000
_emails = itertools.count(1)

if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402

from tests.billing.test_credits_browser import verify_email  # noqa: E402

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def new_page(browser, gateway, settings, request):
    settings.SIGNUP_FREE_CREDITS_USD = "0.50"
    contexts = []
    errors: list[str] = []

    def make(viewport=DESKTOP):
        context = browser.new_context(base_url=gateway.url, viewport=viewport, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Failed resource loads are left out: the credits page asks for Stripe.js from localstripe, not running here.
        page.on("console", lambda msg: errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
        return page

    failed_before = request.session.testsfailed
    yield make
    if request.session.testsfailed > failed_before and contexts:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for context in contexts:
            for i, page in enumerate(context.pages):
                page.screenshot(path=str(SCREENSHOTS / f"failed-{request.node.name}-{i}.png"), full_page=True)
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_up(page) -> tuple[str, Account]:
    """Through allauth's sign-up page. When sign-up credits wait for email verification (deploy's change),
    verify here: this is the one place a journey signs up."""
    email = f"dash{next(_emails)}@example.com"
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form:has(input[name=password2]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))
    verify_email(page, email)  # the sign-up allowance waits for a verified address
    from django.contrib.auth import get_user_model

    return email, account_for_user(user=get_user_model().objects.get(email=email))


def create_key(page, name: str) -> str:
    page.goto("/settings/keys")
    form = page.locator("#create-key form")
    form.locator("input[name=name]").fill(name)
    form.locator("button[type=submit]").click()
    expect(page.locator("#new-key")).to_be_visible()
    raw = page.locator("[data-testid=new-key]").inner_text().strip()
    assert raw.startswith("sk-or-v1-")
    return raw


def chat(gateway, raw: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.api}/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "Say hello."}]},
        timeout=30,
    )


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


def test_journey_signup_key_call_activity_csv_privacy_byok_delete(new_page, gateway, simulator):
    page = new_page()
    email, account = sign_up(page)

    # A brand-new account: the overview points at the keys page, which creates the first key.
    page.goto("/")
    expect(page.locator("#first-key")).to_be_visible()
    page.locator("#first-key a").click()
    page.wait_for_url("**/settings/keys")
    expect(page.locator("#no-keys")).to_be_visible()
    raw = create_key(page, "journey")
    page.locator("#new-key button").click()
    expect(page.locator("#new-key button")).to_have_text("Copied")
    page.reload()
    expect(page.locator("body")).not_to_contain_text(raw)  # shown once
    expect(page.locator("#key-list")).to_contain_text("journey")

    # The activity page is open before the request: the new row appears without a reload.
    page.goto("/activity?period=1h")
    expect(page.locator("#log-rows")).to_contain_text("No requests match.")
    response = chat(gateway, raw, "openai/gpt-4o-mini")
    assert response.status_code == 200, response.text
    gen_id = response.json()["id"]
    assert settlement_flush(15)
    row = page.locator(f"#log-rows tr[data-generation='{gen_id}']")
    expect(row).to_be_visible(timeout=12_000)
    expect(row).to_contain_text("openai/gpt-4o-mini")
    expect(row).to_contain_text("journey")
    generation = Generation.objects.get(id=gen_id)
    assert generation.account_id == account.id and generation.cost > 0

    # The charts (after a reload): one request, the generation's tokens and cost.
    page.reload()
    expect(page.locator("[data-testid=total-requests]")).to_have_text("1")
    expect(page.locator("[data-testid=total-tokens]")).to_have_text(str(generation.tokens_prompt + generation.tokens_completion))
    assert page.locator("canvas[data-drawn='1']").count() == 3
    page.select_option("select[name=group]", "key")
    page.wait_for_url(re.compile(r"group=key"))
    expect(page.locator("#card-spend details")).to_contain_text("journey")

    # CSV export: exactly the generation's row.
    with page.expect_download() as download_info:
        page.locator("#export-csv").click()
    download = download_info.value
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert rows[0] == ["bucket_start_utc", "key", "spend_usd", "tokens", "requests"]
    assert rows[1:] == [[rows[1][0], "journey", nanos_to_usd_string(generation.cost),
                         str(generation.tokens_prompt + generation.tokens_completion), "1"]]

    # The detail view shows what /api/v1/generation returns.
    row_link = page.locator(f"#log-rows tr[data-generation='{gen_id}'] a")
    row_link.click()
    page.wait_for_url(f"**/activity/generations/{gen_id}")
    expect(page.locator("#api-body")).to_contain_text(f'"id": "{gen_id}"')
    expect(page.locator("#generation-detail")).to_contain_text("OpenAI")

    # Privacy: ZDR only; a model served only by a non-ZDR provider is refused, a ZDR one still works.
    page.goto("/settings/privacy")
    page.check("input[name=zdr_only]")
    page.locator("#privacy-form button[type=submit]").click()
    expect(page.locator(".messages")).to_contain_text("Privacy settings saved")
    refused = chat(gateway, raw, "openai/gpt-4o-mini")
    assert refused.status_code == 404
    assert refused.json()["error"]["metadata"]["availability"]["code"] == "privacy_restricted"
    assert chat(gateway, raw, "meta-llama/llama-3.1-8b-instruct").status_code == 200

    # BYOK: add a provider key; it is listed masked.
    page.goto("/settings/byok")
    page.select_option("#byok-add select[name=provider]", "openai")
    page.fill("#byok-add input[name=key]", "sk-my-openai-key-abcd1234")
    page.locator("#byok-add button[type=submit]").click()
    expect(page.locator("#byok-list")).to_contain_text("OpenAI")
    expect(page.locator("body")).not_to_contain_text("sk-my-openai-key-abcd1234")
    assert ProviderKey.objects.filter(account=account, deleted_at__isnull=True).count() == 1

    # Delete the account: password again; keys revoked, credits forfeited, the email free again.
    page.goto("/settings/account")
    page.fill("#delete-account input[name=password]", PASSWORD)
    page.check("#delete-account input[name=confirm]")
    page.locator("#delete-account button[type=submit]").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator(".messages")).to_contain_text("Your account was deleted")
    expect(page.locator("#landing")).to_be_visible()
    assert chat(gateway, raw, "meta-llama/llama-3.1-8b-instruct").status_code in (401, 403)
    account.refresh_from_db()
    assert account.closed_at is not None and account.balance == 0
    assert not ApiKey.objects.filter(account=account, disabled=False).exists()
    assert ledger_drift() == [] and rollups_drift() == []


def test_the_deleted_email_can_sign_up_again(new_page, gateway):
    page = new_page()
    email, account = sign_up(page)
    page.goto("/settings/account")
    page.fill("#delete-account input[name=password]", PASSWORD)
    page.check("#delete-account input[name=confirm]")
    page.locator("#delete-account button[type=submit]").click()
    page.wait_for_url(re.compile(r"/$"))
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form:has(input[name=password2]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))
    from django.contrib.auth import get_user_model

    fresh = account_for_user(user=get_user_model().objects.get(email=email))
    assert fresh.id != account.id and fresh.closed_at is None


def test_screenshots_of_every_page_at_desktop_and_phone_width(new_page, gateway, simulator):
    page = new_page()
    _email, account = sign_up(page)
    raw = create_key(page, "screenshots")
    for model in ("openai/gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct", "openai/gpt-4o-mini"):
        assert chat(gateway, raw, model).status_code == 200
    assert settlement_flush(15)
    gen_id = Generation.objects.filter(account=account).order_by("-created_at").values_list("id", flat=True).first()
    key = ApiKey.objects.get(account=account, name="screenshots")
    pages = {
        "home": "/", "activity": "/activity", "activity-1h": "/activity?period=1h&group=provider",
        "generation": f"/activity/generations/{gen_id}", "keys": "/settings/keys",
        "key-edit": f"/settings/keys/{key.hash}", "key-delete": f"/settings/keys/{key.hash}/delete",
        "privacy": "/settings/privacy", "byok": "/settings/byok", "account": "/settings/account",
        "credits": "/settings/credits", "models": "/models", "model": "/models/meta-llama/llama-3.1-8b-instruct",
        "not-found": "/settings/keys/" + "f" * 64,
    }
    cookies = page.context.cookies()
    phone = new_page(PHONE)
    phone.context.add_cookies(cookies)
    for name, url in pages.items():
        for viewport, tab in (("desktop", page), ("phone", phone)):
            response = tab.goto(url)
            assert response.status == (404 if name == "not-found" else 200), (name, viewport)
            expect(tab.locator("header.topbar")).to_be_visible()
            # Nothing wider than the screen: the page itself never scrolls sideways (tables scroll in their box).
            overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (name, viewport, overflow)
            shot(tab, f"{name}-{viewport}")
    anonymous = new_page(PHONE)
    anonymous.goto("/")
    expect(anonymous.locator("#landing")).to_contain_text("models")
    shot(anonymous, "landing-phone")
    anonymous.set_viewport_size(DESKTOP)
    shot(anonymous, "landing-desktop")
