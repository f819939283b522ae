"""The presets pages in a real browser (Debian's Chromium driven by Playwright) against the live server.

Sign in, create a preset from the form, call the API with ``@preset/slug`` (the preset's system prompt and
temperature reach the provider), edit it (a new version), restore version 1, see the history; a bad field
is a message and saves nothing; another account's preset is a 404. Screenshots at desktop width and at
390 px go to var/test-screenshots/.
"""

from __future__ import annotations

import re

import httpx
import pytest

from presets.models import Preset, PresetVersion
from tests.browser import REQUIRED, SCREENSHOTS
from tests.factories import make_account, make_key

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase-for-tests"

if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture
def page(browser, gateway):
    errors: list[str] = []
    context = browser.new_context(base_url=gateway.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page, account) -> None:
    user = account.owner
    user.set_password(PASSWORD)
    user.save()
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})
    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form:has(input[name=password]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))


def shoot(page, name: str) -> None:
    """The page at desktop width and at 390 px; nothing may be wider than the phone."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(SCREENSHOTS / f"presets-{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / f"presets-{name}-390.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert width <= 390, f"{name}: the page is {width}px wide at 390px"


def test_create_use_edit_restore_a_preset(page, gateway, simulator):
    account = make_account(credits="5")
    bundle = make_key(account=account)
    sign_in(page, account)
    page.goto("/settings/presets")
    expect(page.locator("#no-presets")).to_be_visible()
    page.get_by_role("link", name="New preset").click()
    form = page.locator("#preset-form form")
    form.locator("input[name=name]").fill("Terse helper")
    form.locator("input[name=slug]").fill("terse")
    form.locator("input[name=model]").fill("openai/gpt-4o-mini")
    form.locator("select[name=sort]").select_option("price")
    form.locator("input[name=only]").fill("openai")
    form.locator("textarea[name=system_prompt]").fill("You are terse.")
    form.locator("input[name=temperature]").fill("0.4")
    form.locator("textarea[name=tools]").fill('[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]')
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/presets/terse$"))
    expect(page.locator(".messages")).to_contain_text("Created preset terse")
    preset = Preset.objects.get(account=account, slug="terse")
    assert preset.designated_version.config == {
        "model": "openai/gpt-4o-mini", "provider": {"sort": "price", "only": ["openai"]}, "temperature": 0.4,
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    }

    response = httpx.post(f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
                          json={"model": "@preset/terse", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    sent = simulator.last_request("openai")
    assert sent["temperature"] == 0.4 and sent["messages"][0] == {"role": "system", "content": "You are terse."}

    # an edit is a new version; a bad field saves nothing
    form = page.locator("#preset-form form")
    form.locator("input[name=temperature]").fill("hot")
    form.locator("button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("Temperature must be a number")
    form = page.locator("#preset-form form")
    form.locator("input[name=temperature]").fill("0.9")
    form.locator("textarea[name=tools]").fill('[{"type": "function", "function": {"name": 5}}]')
    form.locator("button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("tools[0].function.name")
    assert PresetVersion.objects.filter(preset=preset).count() == 1
    form = page.locator("#preset-form form")
    form.locator("textarea[name=tools]").fill("")
    form.locator("input[name=temperature]").fill("0.9")
    form.locator("button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("Saved terse as version 2")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    httpx.post(f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
               json={"model": "@preset/terse", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert simulator.last_request("openai")["temperature"] == 0.9
    shoot(page, "edit")

    page.locator("#versions form").first.locator("button").click()  # restore v1 (the only non-current row)
    expect(page.locator("body")).to_contain_text("Restored version 1 as version 3")
    preset.refresh_from_db()
    assert preset.designated_version.version == 3 and preset.designated_version.config["temperature"] == 0.4
    page.goto("/settings/presets")
    expect(page.locator("#presets tbody tr")).to_have_count(1)
    expect(page.locator("#presets")).to_contain_text("@preset/terse")
    shoot(page, "list")
    page.goto("/settings/presets/new")
    shoot(page, "new")


def test_another_accounts_preset_is_a_404(page, gateway):
    owner = make_account()
    make_key(account=owner)
    from presets.services import preset_version_create

    preset_version_create(account=owner, slug="private", config={"model": "openai/gpt-4o-mini"}, system_prompt=None)
    other = make_account()
    sign_in(page, other)
    for path in ("/settings/presets/private", "/settings/presets/private/versions/1/restore"):
        response = page.request.get(path) if "restore" not in path else page.request.post(path)
        assert response.status in (403, 404), path  # the restore POST without a CSRF token is refused too
    assert page.request.get("/settings/presets/private").status == 404
    page.goto("/settings/presets")
    expect(page.locator("#no-presets")).to_be_visible()
    assert PresetVersion.objects.count() == 1
