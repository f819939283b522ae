"""The chatroom in a real browser (Debian's Chromium driven by Playwright) against the live server (uvicorn,
the real socket and session auth), the provider simulator and the real settlement path.

The journey: sign in → pick two models → send → both columns stream → stop one → costs shown (and the
balance lost exactly their sum) → reload, the conversation is still there (IndexedDB) → export → delete →
import → it is back → the activity page lists the requests as "Chatroom". Screenshots at desktop and
390 px under var/test-screenshots/ (chat-desktop.png is two models answering side by side).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from activity.models import Generation
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from tests.browser import REQUIRED, SCREENSHOTS
from tests.chatroom.test_chatroom_consumer import paid_models
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase-for-tests"
WAIT_MS = 20_000

if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def new_page(browser, gateway, request):
    contexts = []
    errors: list[str] = []

    def make(viewport=DESKTOP):
        context = browser.new_context(base_url=gateway.url, viewport=viewport, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
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


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form:has(input[name=password]) [type=submit]").click()
    page.wait_for_load_state()
    page.goto("/chat")
    expect(page.locator("#socket-status")).to_have_text("")  # the socket said "ready"


def pick(page, slug: str) -> None:
    page.fill("#model-search", slug)
    option = page.locator(f'.model-option[data-id="{slug}"]')
    expect(option).to_be_visible()
    expect(option.locator(".opt-price")).to_contain_text("/M in")
    option.click()
    expect(page.locator(".picked-model .pm-name[title='" + slug + "']")).to_be_visible()


def usd_nanos(text: str) -> int:
    match = re.search(r"\$(\d+\.\d+)", text)
    assert match, text
    return int(Decimal(match.group(1)) * 1_000_000_000)


def answer(page, slug: str):
    return page.locator(f".answer:has(.a-model[title='{slug}'])").last


def test_chatroom_journey(new_page, simulator, tmp_path):
    (slug_a, endpoint_a), (slug_b, endpoint_b) = paid_models(2)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=15, completion_tokens=400)
    simulator.set(endpoint_b.provider.slug, tokens_per_second=40, completion_tokens=40)
    account = make_account(credits="5")
    user = account.owner
    user.set_password(PASSWORD)
    user.save()
    before = account.balance

    page = new_page()
    sign_in(page, user.email)
    expect(page.locator("#empty-state")).to_be_visible()
    pick(page, slug_a)
    pick(page, slug_b)
    page.fill("#prompt", "Compare yourselves in one paragraph.")
    page.click("#send")

    a, b = answer(page, slug_a), answer(page, slug_b)
    expect(a).to_have_class(re.compile(r"\bstreaming\b"))
    expect(a.locator(".a-body")).not_to_have_text(re.compile(r"^\s*…?\s*$"))  # tokens arrived while streaming
    expect(b.locator(".a-stats")).to_contain_text("$", timeout=WAIT_MS)  # B finished on its own
    expect(a).to_have_class(re.compile(r"\bstreaming\b"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-desktop.png"))
    a.locator(".a-stop").click()
    expect(a.locator(".a-stats")).to_contain_text("stopped")
    expect(a.locator(".a-stats")).to_contain_text("$")
    simulator.wait_for_stats(endpoint_a.provider.slug, lambda s: s["cancelled"] == 1, timeout=10)

    cost_a, cost_b = usd_nanos(a.locator(".a-stats").inner_text()), usd_nanos(b.locator(".a-stats").inner_text())
    total = usd_nanos(page.locator("#conv-cost").inner_text())
    assert total == cost_a + cost_b > 0
    settlement_flush()
    account.refresh_from_db()
    assert before - account.balance == total
    assert ledger_drift(account_id=account.id) == []
    generations = list(Generation.objects.filter(account=account))
    assert len(generations) == 2 and {g.app_title for g in generations} == {"Chatroom"}
    assert sorted(g.cost for g in generations) == sorted([cost_a, cost_b])
    text_a, text_b = a.locator(".a-body").inner_text(), b.locator(".a-body").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "chat-desktop-done.png"))

    # reload: the conversation is still there (IndexedDB)
    page.reload()
    expect(page.locator(".conv")).to_have_count(1)
    expect(page.locator("#chat-title")).to_have_text("Compare yourselves in one paragraph.")
    expect(answer(page, slug_a).locator(".a-body")).to_have_text(text_a)
    expect(answer(page, slug_b).locator(".a-body")).to_have_text(text_b)
    expect(page.locator("#conv-cost")).to_have_text(re.compile(r"\$"))
    assert usd_nanos(page.locator("#conv-cost").inner_text()) == total

    # export
    with page.expect_download() as download:
        page.click("#export")
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert data["format"] == "openrouter-chatroom" and len(data["conversations"]) == 1
    assert data["conversations"][0]["turns"][0]["answers"]

    # delete
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(".conv .conv-delete").click()
    expect(page.locator(".conv")).to_have_count(0)
    expect(page.locator(".answer")).to_have_count(0)
    page.reload()
    expect(page.locator(".conv")).to_have_count(0)

    # import: it is back
    page.set_input_files("#import", str(exported))
    expect(page.locator(".conv")).to_have_count(1)
    expect(answer(page, slug_a).locator(".a-body")).to_have_text(text_a)
    expect(answer(page, slug_b).locator(".a-stats")).to_contain_text("$")
    assert usd_nanos(page.locator("#conv-cost").inner_text()) == total

    # the activity page lists the chatroom's requests
    page.goto("/activity")
    rows = page.locator("#log tr:has-text('Chatroom'), table tr:has-text('Chatroom')")
    expect(rows.first).to_be_visible()

    # the phone layout: answers stack, nothing wider than the screen
    phone = new_page(PHONE)
    sign_in(phone, user.email)
    phone.set_input_files("#import", str(exported))
    expect(answer(phone, slug_b).locator(".a-stats")).to_contain_text("$")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(SCREENSHOTS / "chat-phone.png"))
    answer(phone, slug_a).scroll_into_view_if_needed()
    phone.screenshot(path=str(SCREENSHOTS / "chat-phone-answers.png"))
    phone.click("#sidebar-open")
    expect(phone.locator("#sidebar")).to_be_in_viewport(ratio=1)
    phone.screenshot(path=str(SCREENSHOTS / "chat-phone-list.png"))


def test_chat_page_needs_sign_in(new_page):
    page = new_page()
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/chat"))


def test_empty_balance_shows_the_402_message_with_a_link_to_credits(new_page, simulator):
    (slug_a, _endpoint), = paid_models(1)
    account = make_account(credits="0")
    account.owner.set_password(PASSWORD)
    account.owner.save()
    page = new_page(PHONE)
    sign_in(page, account.owner.email)
    pick(page, slug_a)
    page.fill("#prompt", "hello")
    page.press("#prompt", "Enter")
    error = answer(page, slug_a).locator(".a-error")
    expect(error).to_contain_text("Insufficient credits")
    expect(error.locator("a")).to_have_attribute("href", "/settings/credits")
    page.screenshot(path=str(SCREENSHOTS / "chat-phone-402.png"), full_page=True)
    assert not Generation.objects.filter(account=account).exists()


def sign_in_new_user(page, credits: str = "5"):
    account = make_account(credits=credits)
    account.owner.set_password(PASSWORD)
    account.owner.save()
    sign_in(page, account.owner.email)
    return account


def test_answers_are_markdown_sanitised_with_copy_buttons(new_page, tmp_path):
    hostile = (
        "# Title\n\nSome **bold** text.\n\n```python\nprint('hi')\n```\n\n"
        "<img src=x onerror=\"window.pwned=1\"> <script>window.pwned=2</script>"
        "<a href=\"javascript:window.pwned=3\">link</a>"
    )
    conversation = {
        "id": "cimported1", "title": "Imported", "created": 1, "updated": 2, "system": "",
        "models": [{"id": "m1", "model": "openai/gpt-4o-mini", "temperature": None, "max_tokens": None, "reasoning": False}],
        "turns": [{"id": "t1", "user": {"text": "<b>not bold</b>", "attachments": []}, "answers": {
            "m1": {"colId": "m1", "model": "openai/gpt-4o-mini", "content": hostile, "reasoning": "thinking about it",
                   "provider": "OpenAI", "status": "done", "usage": {"prompt_tokens": 3, "completion_tokens": 9},
                   "cost_nanos": 1234}}}],
    }
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"format": "openrouter-chatroom", "version": 1, "conversations": [conversation]}))
    page = new_page()
    sign_in_new_user(page)
    page.set_input_files("#import", str(path))
    body = page.locator(".answer .a-body")
    expect(body.locator("h1")).to_have_text("Title")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("pre .code-copy")).to_be_visible()
    expect(page.locator(".user-text")).to_have_text("<b>not bold</b>")  # user text is text, never HTML
    expect(body).to_contain_text("<script>window.pwned=2</script>")  # raw HTML in an answer is shown as text
    expect(page.locator(".answer .reasoning")).to_be_visible()
    page.locator(".answer .reasoning summary").click()
    expect(page.locator(".answer .reasoning-text")).to_have_text("thinking about it")
    assert page.locator(".answer script").count() == 0
    assert page.locator(".answer [onerror]").count() == 0
    assert page.locator(".answer a[href^='javascript']").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator("#conv-cost")).to_have_text("$0.000001234")

    # a file that is not an export is refused with a message
    bad = tmp_path / "bad.json"
    bad.write_text('{"conversations": 5}')
    page.set_input_files("#import", str(bad))
    expect(page.locator("#page-error")).to_contain_text("not a chatroom export")


PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0"
    "f01f0005000201e5272ade0000000049454e44ae426082"
)


def test_attachments_go_to_the_models_that_can_read_them(new_page, simulator, tmp_path):
    from routing.models import Model
    from tests.routing.test_plugins_file_parser import make_pdf

    vision = "openai/gpt-4o-mini"
    text_only, text_provider = next(
        (m.slug, endpoints[0].provider.slug)
        for m in Model.objects.filter(active=True).order_by("slug")
        if set(m.input_modalities) == {"text"}
        and len(endpoints := list(m.endpoints.filter(active=True, price_prompt__gt=0).select_related("provider"))) == 1
        and endpoints[0].provider.dialect == "openai"
    )
    (tmp_path / "dot.png").write_bytes(PNG_1X1)
    (tmp_path / "report.pdf").write_bytes(make_pdf(["Quarterly report: revenue grew 12%"]))
    page = new_page()
    sign_in_new_user(page)
    pick(page, vision)
    pick(page, text_only)
    page.set_input_files("#attach", [str(tmp_path / "dot.png"), str(tmp_path / "report.pdf")])
    expect(page.locator("#attachments .file-chip")).to_have_count(2)
    expect(page.locator("#attachments")).to_contain_text("Images go only to the models that can read them")
    page.fill("#prompt", "What is in these files?")
    page.click("#send")
    expect(page.locator(".answer .a-stats")).to_have_count(2)
    for slug in (vision, text_only):
        expect(answer(page, slug).locator(".a-stats")).to_contain_text("$")
    expect(page.locator(".user-files img")).to_have_count(1)
    sent_vision = simulator.last_request("openai")["messages"][-1]["content"]
    assert any(part.get("type") == "image_url" for part in sent_vision)
    sent_text = simulator.last_request(text_provider)["messages"][-1]["content"]
    texts = " ".join(part.get("text", "") for part in sent_text if isinstance(part, dict))
    assert not any(part.get("type") == "image_url" for part in sent_text if isinstance(part, dict))
    assert "Quarterly report: revenue grew 12%" in texts  # the PDF, parsed by the file-parser plugin


def test_regenerate_and_branch_by_editing_a_user_message(new_page, simulator):
    (slug_a, endpoint_a), = paid_models(1)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=200, completion_tokens=12)
    page = new_page()
    account = sign_in_new_user(page)
    before = account.balance
    pick(page, slug_a)
    page.fill("#prompt", "First question")
    page.click("#send")
    expect(answer(page, slug_a).locator(".a-stats")).to_contain_text("$")
    first_cost = usd_nanos(answer(page, slug_a).locator(".a-stats").inner_text())
    answer(page, slug_a).locator(".a-regenerate").click()
    expect(answer(page, slug_a)).to_have_class(re.compile(r"\bstreaming\b"))
    expect(answer(page, slug_a).locator(".a-stats")).to_contain_text("$")
    second_cost = usd_nanos(answer(page, slug_a).locator(".a-stats").inner_text())
    # the conversation's total counts the regenerated answer too: it was paid for
    assert usd_nanos(page.locator("#conv-cost").inner_text()) == first_cost + second_cost
    settlement_flush()
    account.refresh_from_db()
    assert before - account.balance == first_cost + second_cost
    assert Generation.objects.filter(account=account).count() == 2

    page.locator(".turn .edit").first.click()
    page.locator(".turn .edit-form textarea").fill("A better question")
    page.locator(".turn .edit-form [type=submit]").click()
    expect(page.locator("#chat-title")).to_have_text("First question (branch)")
    expect(page.locator(".user-text")).to_have_text(["A better question"])
    expect(answer(page, slug_a).locator(".a-stats")).to_contain_text("$")
    expect(page.locator(".conv")).to_have_count(2)
    sent = simulator.last_request(endpoint_a.provider.slug)["messages"]
    assert sent[-1]["content"] == "A better question" and len(sent) == 1
