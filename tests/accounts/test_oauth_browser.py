"""OAuth PKCE in a real browser (Debian's Chromium driven by Playwright), with a third-party app.

The app is a tiny HTTP server on a random loopback port, as a CLI or a desktop app would run: its
page links to ``/auth`` with an S256 challenge and a ``state``; its callback checks the state,
exchanges the code and its verifier for a key over HTTP and calls a chat completion with the new
key, then shows what it got. The user signs in, sees the app named ``localhost:PORT`` at 390 px,
sets a credit limit and authorizes; the key shows on the keys page named after the app and is
revoked there. The Deny path returns ``error=access_denied`` with the state. Screenshots go to
``var/test-screenshots/oauth-*.png``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from accounts.models import ApiKey
from billing.money import usd_to_nanos
from tests.browser import REQUIRED, SCREENSHOTS
from tests.factories import make_account
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase-for-tests"
PHONE = {"width": 390, "height": 844}

if not REQUIRED:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402


class ThirdPartyApp:
    """A third-party app: one page with a "Sign in with OpenRouter" link and a callback."""

    def __init__(self, gateway_url: str, model: str) -> None:
        self.gateway_url, self.model = gateway_url, model
        self.verifier = secrets.token_urlsafe(48)
        self.state = secrets.token_urlsafe(12)
        self.keys: list[str] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                body = app.callback(parse_qs(parts.query)) if parts.path == "/callback" else app.home()
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def home(self) -> str:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"callback_url": f"{self.url}/callback?from=app", "code_challenge": challenge,
                           "code_challenge_method": "S256", "state": self.state})
        return (f"<!doctype html><meta name=viewport content='width=device-width'><title>Demo app</title>"
                f"<h1>Demo app</h1><a id=signin href='{html.escape(self.gateway_url)}/auth?{html.escape(query)}'>"
                f"Sign in with OpenRouter</a>")

    def callback(self, query: dict) -> str:
        def one(name: str) -> str:
            return query.get(name, [""])[0]

        if one("state") != self.state or one("from") != "app":
            return "<p id=result>state mismatch</p>"
        if one("error"):
            return f"<p id=result>declined: {html.escape(one('error'))}</p>"
        exchange = httpx.post(f"{self.gateway_url}/api/v1/auth/keys", timeout=30, json={
            "code": one("code"), "code_verifier": self.verifier, "code_challenge_method": "S256"})
        if exchange.status_code != 200:
            return f"<p id=result>exchange failed: {exchange.status_code}</p>"
        key = exchange.json()["key"]
        self.keys.append(key)
        reply = httpx.post(f"{self.gateway_url}/api/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {key}"},
                           json={"model": self.model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        text = reply.json()["choices"][0]["message"]["content"] if reply.status_code == 200 else f"HTTP {reply.status_code}"
        return (f"<p id=result>signed in as {html.escape(exchange.json()['user_id'])}</p>"
                f"<p id=reply>{html.escape(text)}</p>")

    def __enter__(self) -> ThirdPartyApp:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def page(browser, gateway):
    context = browser.new_context(base_url=gateway.url, viewport=PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"oauth-{name}.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 390 px"


def test_third_party_app_round_trip_authorize_use_revoke_and_deny(page, gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="5")
    user = account.owner
    user.set_password(PASSWORD)
    user.save()
    with ThirdPartyApp(gateway.url, slug) as app:
        port = urlsplit(app.url).port
        # The app sends a signed-out user to /auth: sign in first, then back to the consent page.
        page.goto(app.url)
        page.click("#signin")
        page.wait_for_url(re.compile(r"/accounts/login/"))
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form:has(input[name=password]) [type=submit]").click()
        page.wait_for_url(re.compile(r"/auth\?"))
        expect(page.locator("[data-testid=oauth-app]")).to_have_text(f"localhost:{port}")
        shot(page, "consent-390")
        page.fill("input[name=limit]", "1.5")
        page.click("button[value=authorize]")

        # Back at the app: it exchanged the code and called a model with the new key.
        page.wait_for_url(re.compile(rf"^{re.escape(app.url)}/callback\?"))
        expect(page.locator("#result")).to_have_text(f"signed in as {account.public_id}")
        assert page.locator("#reply").inner_text() and not page.locator("#reply").inner_text().startswith("HTTP")
        assert "code=" in page.url and f"state={app.state}" in page.url
        shot(page, "app-signed-in")
        key = ApiKey.objects.get(account=account)
        assert (key.name, key.limit) == (f"localhost:{port}", usd_to_nanos("1.5"))

        # The keys page names the app; the user revokes the key there.
        page.goto("/settings/keys")
        row = page.locator(f"tr[data-key='localhost:{port}']")
        expect(row.locator("[data-testid=oauth-app]")).to_have_text(f"app: localhost:{port}")
        shot(page, "keys-390")
        row.get_by_role("link", name="Delete").click()
        page.locator("#delete-key button[type=submit]").click()
        page.wait_for_url(re.compile(r"/settings/keys$"))
        assert not ApiKey.objects.filter(account=account).exists()
        revoked = httpx.get(f"{gateway.api}/key", headers={"Authorization": f"Bearer {app.keys[0]}"})
        assert revoked.status_code == 401

        # Deny: the app gets error=access_denied and its state back; no key is made.
        page.goto(app.url)
        page.click("#signin")
        page.wait_for_url(re.compile(r"/auth\?"))
        page.click("button[value=deny]")
        page.wait_for_url(re.compile(rf"^{re.escape(app.url)}/callback\?"))
        expect(page.locator("#result")).to_have_text("declined: access_denied")
        assert not ApiKey.objects.filter(account=account).exists()


def test_bad_callback_and_headless_pages_at_390(page, gateway):
    account = make_account(credits="1")
    account.owner.set_password(PASSWORD)
    account.owner.save()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", account.owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form:has(input[name=password]) [type=submit]").click()
    page.wait_for_url(re.compile(r"/settings/credits$"))

    page.goto("/auth?" + urlencode({"callback_url": "javascript:alert(1)"}))
    expect(page.locator("[data-testid=oauth-error]")).to_contain_text("javascript: scheme")
    shot(page, "bad-callback-390")

    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 50).digest()).rstrip(b"=").decode()
    page.goto("/auth?" + urlencode({"code_challenge": challenge, "code_challenge_method": "S256", "key_label": "my-cli"}))
    expect(page.locator("#oauth h1")).to_contain_text("Headless app")
    page.click("button[value=authorize]")
    code = page.locator("[data-testid=oauth-code]").inner_text().strip()
    assert code.startswith("auth_code_")
    shot(page, "headless-code-390")
    answer = httpx.post(f"{gateway.api}/auth/keys", json={"code": code, "code_verifier": "v" * 50})
    assert answer.status_code == 200, answer.text
    assert ApiKey.objects.get(account=account).name == "my-cli"
