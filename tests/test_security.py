"""Safe by default when deployed: the public development secrets are refused with DEBUG off, every page
carries X-Frame-Options and a Content-Security-Policy without inline scripts, the documented production
settings pass ``manage.py check --deploy``, and the simulated crypto processor is off unless allowed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from billing.models import Purchase
from openrouter_site.install_secrets import PUBLIC_DEV_VALUES, install_secrets_ensure
from tests.factories import make_account

ROOT = Path(__file__).resolve().parent.parent
SECRETS = tuple(PUBLIC_DEV_VALUES)
# The README's "Production settings" (values are examples; the secrets are long and random).
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k8Jq2-pX7vW4nR9sT1uY6zA3bC5dE0fG8hI2jK4lM6nO8pQ0rS2tU4vW6xY8zA0bC2dE4",
    "STRIPE_SECRET_KEY": "sk_live_example",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_Zp3Lk9Qw2Xr7Tn5Vb1Mc8Hd4",
    "CRYPTO_WEBHOOK_SECRET": "c9Rt4Yu7Io2Pa5Sd8Fg1Hj6Kl3",
    "BYOK_ENCRYPTION_KEYS": "o6Yb3uHj3m6Zb7kq0jEtVvYtZrY0pXyG0mM6qI7bF2s=",
    "ALLOWED_HOSTS": "gateway.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://gateway.example.com",
    "HTTPS": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
}


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a fresh process with none of the suite's secrets: only what ``env`` gives it."""
    dropped = {*SECRETS, "DEBUG", "DATABASE_URL", "REDIS_URL", "CRYPTO_SIMULATED_ENABLED", "DJANGO_SETTINGS_MODULE"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base.update(DJANGO_SETTINGS_MODULE="openrouter_site.settings", VAR_DIR=str(tmp_path / "var"))
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


# --- The public development secrets -----------------------------------------------------------------


def test_debug_off_with_the_public_development_secrets_refuses_to_start_naming_them(tmp_path):
    refused = manage(tmp_path, "check", DEBUG="0")
    assert refused.returncode != 0
    assert "Refusing to start with DEBUG off: SECRET_KEY, STRIPE_WEBHOOK_SECRET, CRYPTO_WEBHOOK_SECRET" in refused.stderr

    one_left = manage(tmp_path, "check", DEBUG="0", SECRET_KEY="x" * 60, STRIPE_WEBHOOK_SECRET="whsec_real")
    assert one_left.returncode != 0
    assert "Refusing to start with DEBUG off: CRYPTO_WEBHOOK_SECRET still holds its public development value" in one_left.stderr


def test_debug_on_or_per_install_secrets_start(tmp_path):
    assert manage(tmp_path, "check", DEBUG="1").returncode == 0
    # What `make run` does on a fresh clone: random secrets, once, in var/ (then every command uses them).
    values = install_secrets_ensure(tmp_path / "var")
    assert set(values) == set(SECRETS) and not set(values.values()) & set(PUBLIC_DEV_VALUES.values())
    assert install_secrets_ensure(tmp_path / "var") == values  # generated once
    assert (tmp_path / "var" / "dev-secrets.json").stat().st_mode & 0o077 == 0
    started = manage(tmp_path, "check", DEBUG="0")
    assert started.returncode == 0, started.stderr


def test_documented_production_settings_pass_check_deploy(tmp_path):
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_names_what_is_left_of_development(tmp_path):
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", DEBUG="1")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016", "security.W018",
                     "openrouter.W001", "openrouter.W002", "openrouter.W003", "openrouter.W004"):
        assert check_id in output


# --- Headers on every page ----------------------------------------------------------------------------


def csp_directives(response) -> dict[str, list[str]]:
    return {
        name: sources
        for name, *sources in (part.split() for part in response["Content-Security-Policy"].split(";") if part.strip())
    }


@pytest.mark.django_db
def test_every_page_refuses_framing_and_inline_scripts(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_JS_URL = "", "http://127.0.0.1:9999", ""
    client = Client()
    signed_in = Client()
    signed_in.force_login(make_account(credits="1").owner)
    responses = {
        "sign-in": client.get("/accounts/login/"),
        "sign-up": client.get("/accounts/signup/"),
        "credits": signed_in.get("/settings/credits"),
        "not found": client.get("/no/such/page"),
        "static": client.get("/static/js/credits.js"),
        "api": client.get("/api/v1/models"),
    }
    for name, response in responses.items():
        assert response["X-Frame-Options"] == "DENY", name
        directives = csp_directives(response)
        assert directives["frame-ancestors"] == ["'none'"], name
        assert directives["default-src"] == ["'self'"], name
        assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"], name
    credits = csp_directives(responses["credits"])
    # localstripe's Stripe.js stand-in: its script, frames and API calls come from its origin.
    for directive in ("script-src", "connect-src", "frame-src"):
        assert credits[directive] == ["'self'", "http://127.0.0.1:9999"]


@pytest.mark.django_db
def test_real_stripe_origins_and_extra_sources_from_settings(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_JS_URL = "sk_live_x", "", ""
    settings.CONTENT_SECURITY_POLICY = {**settings.CONTENT_SECURITY_POLICY, "img-src": ["'self'", "https://cdn.example.com"]}
    directives = csp_directives(Client().get("/accounts/login/"))
    assert directives["script-src"] == ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"]
    assert "https://hooks.stripe.com" in directives["frame-src"]
    assert directives["connect-src"] == ["'self'", "https://api.stripe.com"]
    assert directives["img-src"] == ["'self'", "https://cdn.example.com"]


def test_templates_have_no_inline_scripts_or_handlers():
    """The CSP allows script files only: no <script> block with code, no on*= attribute, no hx-on."""
    inline_script = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
    handler = re.compile(r"\s(on[a-z]+|hx-on[:\w-]*)\s*=", re.I)
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in inline_script.finditer(text)]
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in handler.finditer(text)]
    assert offenders == []


# --- The simulated crypto processor ---------------------------------------------------------------------


def test_simulated_crypto_is_off_unless_allowed(transactional_db, settings):
    settings.CRYPTO_PROCESSOR, settings.CRYPTO_SIMULATED_ENABLED = "simulated", True
    account = make_account(credits="0")
    client = Client()
    client.force_login(account.owner)
    assert client.post("/settings/credits/crypto/purchase", {"amount": "10"}).status_code == 302
    allowed = Purchase.objects.get(account=account)
    assert client.get(allowed.crypto_hosted_url).status_code == 200
    assert 'value="crypto"' in client.get("/settings/credits").content.decode()

    settings.CRYPTO_SIMULATED_ENABLED = False
    # The pay page, the webhook and new purchases are gone; nothing is saved.
    assert client.get(allowed.crypto_hosted_url).status_code == 404
    assert client.post(allowed.crypto_hosted_url, {"outcome": "pay"}).status_code == 404
    assert Client().post("/billing/webhooks/crypto", b"{}", content_type="application/json").status_code == 404
    refused = client.post("/settings/credits/crypto/purchase", {"amount": "10"}, follow=True)
    assert [str(m) for m in refused.context["messages"]] == ["Crypto payments are not available on this site."]
    assert Purchase.objects.filter(account=account).count() == 1
    assert 'value="crypto"' not in client.get("/settings/credits").content.decode()
