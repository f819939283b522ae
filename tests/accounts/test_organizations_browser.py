"""Organizations and guardrails in a real browser (Debian's Chromium, Playwright) against the live server,
the provider simulator and the real settlement path.

The journey: an admin signs up and creates an organization, moves credits into it and invites a member
by email → the member (signed up in another browser) accepts the link and creates a key → the admin
sees that key with its creator → the admin creates a guardrail with a $0.01 daily budget and assigns
it to the member → the member's key is refused with 403 once the budget is spent → the guardrails page
shows the member (and the key's budget line) as blocked. Screenshots at desktop and 390 px widths
under var/test-screenshots/orgs-*.png.
"""

from __future__ import annotations

import math
import re

import httpx
import pytest
from django.core import mail

from accounts.models import Account, ApiKey, Membership
from activity.models import Generation
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from routing.models import Endpoint
from tests.dashboard.test_dashboard_browser import (  # noqa: F401 (fixtures)
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    create_key,
    new_page,
    sign_up,
)

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "openai/gpt-4o-mini"


def chat(gateway, raw: str, model: str, *, max_tokens: int) -> httpx.Response:
    return httpx.post(
        f"{gateway.api}/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Say hello."}]},
        timeout=30,
    )


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"orgs-{name}.png"), full_page=True)


def _invite_path(email: str) -> str:
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    return re.search(r"https?://[^/\s]+(/organizations/invite/\S+)", message.body).group(1)


def test_journey_org_invite_member_key_guardrail_blocks(new_page, gateway, simulator):  # noqa: F811
    from django.core.cache import cache
    from playwright.sync_api import expect

    cache.clear()  # allauth's sign-up and confirmation-mail rate limits live in the (Redis) cache across runs
    admin = new_page()
    admin_email, admin_personal = sign_up(admin)
    member = new_page()
    member_email, _member_personal = sign_up(member)

    # The admin creates the organization from the dashboard and moves credits into it.
    admin.goto("/settings/organization")
    admin.locator("#create-organization input[name=name]").fill("Journey Co")
    admin.locator("#create-organization button[type=submit]").click()
    expect(admin.locator(".messages")).to_contain_text("Created Journey Co")
    expect(admin.locator("#context-select")).to_have_value(re.compile(r"^org_"))
    org = Account.objects.get(kind=Account.Kind.ORGANIZATION, name="Journey Co")
    admin.locator("#transfer input[name=amount]").fill("0.40")
    admin.locator("#transfer button[type=submit]").click()
    expect(admin.locator(".messages")).to_contain_text("Moved $0.40")
    org.refresh_from_db()
    assert org.balance == usd_to_nanos("0.40")

    # Invite by email; the member accepts in their own browser.
    admin.locator("#invite input[name=email]").fill(member_email)
    admin.locator("#invite button[type=submit]").click()
    expect(admin.locator("#pending-invites")).to_contain_text(member_email)
    shot(admin, "organization-admin")
    member.goto(_invite_path(member_email))
    expect(member.locator("#invitation")).to_contain_text("Journey Co")
    shot(member, "invite")
    member.locator("#accept-invite").click()
    member.wait_for_url("**/settings/keys")
    expect(member.locator(".messages")).to_contain_text("You joined Journey Co as member")
    assert Membership.objects.get(account=org, user__email=member_email).role == "member"

    # The member creates a key in the organization; the admin sees it, with its creator.
    raw = create_key(member, "member-key")
    key = ApiKey.objects.get(name="member-key")
    assert key.account_id == org.id
    admin.goto("/settings/keys")
    row = admin.locator("#key-list tr[data-key='member-key']")
    expect(row).to_contain_text(member_email)
    shot(admin, "keys-admin")
    member.goto("/settings/byok")  # members do not manage BYOK
    expect(member.locator("main")).to_contain_text("do not have access")

    # The admin creates a guardrail with a $0.01 daily budget and assigns it to the member.
    admin.goto("/settings/guardrails")
    form = admin.locator("#create-guardrail form")
    form.locator("input[name=name]").fill("Daily cap")
    form.locator("input[name=limit]").fill("0.01")
    form.locator("select[name=reset_interval]").select_option("daily")
    form.locator("button[type=submit]").click()
    expect(admin.locator(".messages")).to_contain_text("Created Daily cap")
    admin.locator(f"#assign label:has-text('{member_email}') input[name=member_user_ids]").check()
    admin.locator("#save-assignments").click()
    expect(admin.locator(".messages")).to_contain_text("1 member(s)")

    # Each request costs about $0.003 (the simulator answers max_tokens tokens): the fourth is refused.
    endpoint = Endpoint.objects.filter(model__slug=MODEL, active=True).order_by("price_completion").first()
    tokens = math.ceil(3_000_000 * 1_000_000 / endpoint.price_completion)
    simulator.set(endpoint.provider.slug, completion_tokens=tokens)
    statuses = []
    for _ in range(10):
        response = chat(gateway, raw, MODEL, max_tokens=tokens)
        statuses.append(response.status_code)
        if response.status_code == 403:
            break
    assert statuses[-1] == 403 and set(statuses[:-1]) == {200}, statuses
    assert 2 <= len(statuses) <= 5, statuses
    error = response.json()["error"]
    assert "Guardrail 'Daily cap'" in error["message"] and "daily budget of $0.01" in error["message"]
    settlement_flush()
    spent = sum(Generation.objects.filter(api_key=key).values_list("cost", flat=True))
    assert 0 < spent <= usd_to_nanos("0.01")

    # The guardrails page shows the member as blocked, with spend against the budget and the reset time.
    admin.goto("/settings/guardrails")
    blocked = admin.locator(f"#guardrail-status tr[data-who='{member_email}']")
    expect(blocked.locator("[data-testid=blocked]")).to_be_visible()
    expect(blocked).to_contain_text("Daily cap")
    expect(blocked).to_contain_text("UTC")
    shot(admin, "guardrails-blocked")
    admin.goto(admin.locator("#guardrail-list a:has-text('Daily cap')").get_attribute("href"))
    expect(admin.locator("#guardrail-status")).to_contain_text(member_email)
    shot(admin, "guardrail-detail")
    for name, path in (("organization", "/settings/organization"), ("guardrails", "/settings/guardrails")):
        admin.set_viewport_size(PHONE)
        admin.goto(path)
        assert admin.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, name
        shot(admin, f"{name}-phone")
    admin.set_viewport_size(DESKTOP)
    assert ledger_drift() == []
