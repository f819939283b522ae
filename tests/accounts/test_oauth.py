"""OAuth PKCE: the /auth consent page, POST /api/v1/auth/keys (exchange) and POST /api/v1/auth/keys/code,
against the live server, PostgreSQL and Redis. The consent page is driven with Django's test client
(a signed-in session); every exchange goes over real HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import time_machine
from django.test import Client
from openrouter import OpenRouter, errors

from accounts import oauth
from accounts.models import ApiKey, AuthCode
from billing.money import usd_to_nanos
from tests.dashboard.helpers import signed_in_user
from tests.factories import make_key
from tests.openapi import validate_response

pytestmark = pytest.mark.django_db(transaction=True)

RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CALLBACK = "https://myapp.example/auth/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(client: Client, *, decision: str = "authorize", limit: str = "", **params) -> httpx.Response:
    """GET the consent page with ``params``, then POST the decision; returns the POST's response."""
    shown = client.get("/auth?" + urlencode(params))
    assert shown.status_code == 200, shown.content[:500]
    return client.post("/auth", {**params, "decision": decision, "limit": limit})


def code_from(response) -> str:
    assert response.status_code == 302, response.content[:500]
    query = parse_qs(urlsplit(response["Location"]).query)
    return query["code"][0]


def exchange(server, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.api}/auth/keys", json=body, timeout=30, **kwargs)


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    if message is not None:
        assert error["message"] == message


def key_works(server, raw: str) -> dict:
    response = httpx.get(f"{server.api}/key", headers={"Authorization": f"Bearer {raw}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


# --- pure rules ----------------------------------------------------------------------------------


def test_s256_matches_rfc_7636_appendix_b():
    assert oauth.s256(RFC_VERIFIER) == RFC_CHALLENGE
    assert oauth.verifier_matches(challenge=RFC_CHALLENGE, method="S256", verifier=RFC_VERIFIER)
    assert not oauth.verifier_matches(challenge=RFC_CHALLENGE, method="S256", verifier=RFC_VERIFIER[:-1] + "j")
    assert not oauth.verifier_matches(challenge=RFC_CHALLENGE, method="plain", verifier=RFC_VERIFIER)


@pytest.mark.parametrize(
    ("url", "origin", "name"),
    [
        ("https://myapp.example/cb?x=1", "https://myapp.example", "myapp.example"),
        ("https://MyApp.example:8443/cb", "https://myapp.example:8443", "myapp.example:8443"),
        ("http://localhost:3000/callback", "http://localhost:3000", "localhost:3000"),
        ("http://127.0.0.1:51234/cb", "http://127.0.0.1:51234", "localhost:51234"),
        ("http://[::1]:8080/", "http://[::1]:8080", "localhost:8080"),
        ("http://localhost/cb", "http://localhost", "localhost:80"),
        ("vscode://saoudrizwan.claude-dev/openrouter", "vscode://saoudrizwan.claude-dev", "vscode://saoudrizwan.claude-dev"),
        ("fudai://openrouter-callback", "fudai://openrouter-callback", "fudai://openrouter-callback"),
        ("com.example.app:/oauth2redirect", "com.example.app:", "com.example.app:"),
    ],
)
def test_allowed_callbacks_and_the_app_they_name(url, origin, name):
    callback = oauth.callback_parse(url)
    assert (callback.url, callback.origin, callback.app_name) == (url, origin, name)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)", "JavaScript://%0aalert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd",
        "http://myapp.example/cb", "http://192.168.1.2/cb", "http://localhost.evil.example/cb", "//myapp.example/cb",
        "/relative", "myapp.example/cb", "https:///nohost", "https://user:pw@myapp.example/cb",
        "https://myapp.example@evil.example/", "https://myapp.example/cb#frag", "https://my app.example/",
        "https://myapp.example/\x00", "https://myapp.example:99999/", "vbscript:x", "blob:https://a/b",
        "ftp://myapp.example/", "https://" + "a" * 2100 + ".example/", "ws://localhost:1/",
        "https://myapp.example;script-src/cb", "vscode://a;b/x", "https://a_b.example/",
    ],
)
def test_refused_callbacks(url):
    with pytest.raises(oauth.OAuthInputError):
        oauth.callback_parse(url)


def test_redirect_keeps_the_callbacks_query_and_replaces_our_own_names():
    url = oauth.callback_redirect_url("https://a.example/cb?app=1&code=stale&x=", {"code": "C", "state": "s t"})
    assert url == "https://a.example/cb?app=1&x=&code=C&state=s+t"


# --- the consent page and the exchange ---------------------------------------------------------


def test_s256_round_trip_state_echoed_callback_query_kept_and_only_a_hash_stored(client, live_server_url):
    user, account = signed_in_user(client)
    verifier, challenge = pkce()
    response = authorize(
        client, limit="2.5", callback_url=CALLBACK + "?tenant=7", code_challenge=challenge,
        code_challenge_method="S256", key_label="My editor", state="xyz-123",
    )
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["tenant"] == ["7"] and query["state"] == ["xyz-123"]
    code = code_from(response)
    row = AuthCode.objects.get()
    assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert code not in {row.callback_url, row.code_challenge, row.key_label}
    assert row.expires_at - row.created_at == dt.timedelta(minutes=10)

    answer = exchange(live_server_url, {"code": code, "code_verifier": verifier, "code_challenge_method": "S256"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    validate_response("/auth/keys", "post", 200, body)
    assert set(body) == {"key", "user_id"} and body["user_id"] == account.public_id
    info = key_works(live_server_url, body["key"])
    assert info["limit"] == 2.5
    key = ApiKey.objects.get(hash=hashlib.sha256(body["key"].encode()).hexdigest())
    assert (key.account_id, key.creator_id, key.name, key.limit) == (account.id, user.id, "My editor", usd_to_nanos("2.5"))
    row.refresh_from_db()
    assert row.used_at is not None and row.api_key_id == key.id

    # The keys page names the app and can revoke the key.
    page = client.get("/settings/keys").content.decode()
    assert "My editor" in page and "app: myapp.example" in page
    client.post(f"/settings/keys/{key.hash}/delete")
    assert not ApiKey.objects.filter(id=key.id).exists()
    assert httpx.get(f"{live_server_url.api}/key", headers={"Authorization": f"Bearer {body['key']}"}).status_code == 401


def test_plain_challenge_and_wrong_verifier_does_not_use_the_code_up(client, live_server_url):
    signed_in_user(client)
    challenge = secrets.token_urlsafe(40)
    code = code_from(authorize(client, callback_url=CALLBACK, code_challenge=challenge, code_challenge_method="plain"))
    assert_error(exchange(live_server_url, {"code": code, "code_verifier": challenge + "x"}), 403, oauth.INVALID_CODE)
    assert_error(exchange(live_server_url, {"code": code}), 403, oauth.INVALID_CODE)
    assert_error(exchange(live_server_url, {"code": code, "code_verifier": oauth.s256(challenge),
                                            "code_challenge_method": "S256"}), 403, oauth.INVALID_CODE)
    assert not ApiKey.objects.exists()
    answer = exchange(live_server_url, {"code": code, "code_verifier": challenge, "code_challenge_method": "plain"})
    assert answer.status_code == 200, answer.text
    key_works(live_server_url, answer.json()["key"])


def test_a_challenge_without_method_is_plain_as_rfc_7636_says(client, live_server_url):
    signed_in_user(client)
    challenge = secrets.token_urlsafe(40)
    code = code_from(authorize(client, callback_url=CALLBACK, code_challenge=challenge))
    assert AuthCode.objects.get().code_challenge_method == "plain"
    assert exchange(live_server_url, {"code": code, "code_verifier": challenge}).status_code == 200


def test_no_challenge_as_cline_sends_still_works_and_the_key_is_named_after_the_app(client, live_server_url):
    signed_in_user(client)
    code = code_from(authorize(client, callback_url="vscode://saoudrizwan.claude-dev/openrouter"))
    answer = exchange(live_server_url, {"code": code})
    assert answer.status_code == 200, answer.text
    assert ApiKey.objects.get().name == "vscode://saoudrizwan.claude-dev"


def test_replay_is_refused_and_no_second_key_is_made(client, live_server_url):
    signed_in_user(client)
    verifier, challenge = pkce()
    code = code_from(authorize(client, callback_url=CALLBACK, code_challenge=challenge, code_challenge_method="S256"))
    body = {"code": code, "code_verifier": verifier}
    assert exchange(live_server_url, body).status_code == 200
    assert_error(exchange(live_server_url, body), 403, oauth.INVALID_CODE)
    assert ApiKey.objects.count() == 1


def test_a_code_expires_after_ten_minutes(client, live_server_url):
    signed_in_user(client)
    verifier, challenge = pkce()
    params = {"callback_url": CALLBACK, "code_challenge": challenge, "code_challenge_method": "S256"}
    early, late = code_from(authorize(client, **params)), code_from(authorize(client, **params))
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now + dt.timedelta(minutes=9, seconds=50), tick=False):
        assert exchange(live_server_url, {"code": early, "code_verifier": verifier}).status_code == 200
    with time_machine.travel(now + dt.timedelta(minutes=10, seconds=1), tick=False):
        assert_error(exchange(live_server_url, {"code": late, "code_verifier": verifier}), 403, oauth.EXPIRED_CODE)
    assert ApiKey.objects.count() == 1


def test_concurrent_exchanges_of_one_code_make_exactly_one_key(client, live_server_url):
    signed_in_user(client)
    verifier, challenge = pkce()
    code = code_from(authorize(client, callback_url=CALLBACK, code_challenge=challenge, code_challenge_method="S256"))
    start = threading.Barrier(12)
    results: list[int] = []

    def race() -> None:
        start.wait()
        results.append(exchange(live_server_url, {"code": code, "code_verifier": verifier}).status_code)

    threads = [threading.Thread(target=race) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [200] + [403] * 11
    assert ApiKey.objects.count() == 1


def test_exchange_bad_input_is_400_or_403_in_the_envelope(live_server_url):
    assert_error(exchange(live_server_url, {"code": "auth_code_nope", "code_challenge_method": "S512"}), 400,
                 oauth.INVALID_METHOD)
    assert_error(exchange(live_server_url, {"code": "auth_code_nope"}), 403, oauth.INVALID_CODE)
    assert_error(exchange(live_server_url, {"code": "x" * 5000}), 403, oauth.INVALID_CODE)
    assert_error(exchange(live_server_url, {"code": ""}), 403, oauth.INVALID_CODE)
    for body in ({}, {"code": 5}, {"code": None}, {"code": ["a"]}, {"code": "a", "code_verifier": 1}, [1]):
        assert_error(exchange(live_server_url, body), 400)
    assert_error(httpx.post(f"{live_server_url.api}/auth/keys", content=b'{"code": 1e999}',
                            headers={"Content-Type": "application/json"}), 400)
    assert_error(httpx.get(f"{live_server_url.api}/auth/keys"), 405)


# --- the page's refusals ----------------------------------------------------------------------


def test_signed_out_user_is_sent_to_sign_in_and_back(client):
    url = "/auth?" + urlencode({"callback_url": CALLBACK, "state": "s"})
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert parse_qs(urlsplit(response["Location"]).query)["next"] == [url]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"callback_url": "javascript:alert(1)"}, "javascript: scheme"),
        ({"callback_url": "data:text/html,hi"}, "data: scheme"),
        ({"callback_url": "file:///etc/passwd"}, "file: scheme"),
        ({"callback_url": "http://myapp.example/cb"}, "plain http is allowed only for localhost"),
        ({"callback_url": CALLBACK, "key_label": "x" * 101}, "at most 100 characters"),
        ({"callback_url": CALLBACK, "code_challenge": "short"}, "43-128 characters"),
        ({"callback_url": CALLBACK, "code_challenge": RFC_CHALLENGE, "code_challenge_method": "S512"},
         oauth.INVALID_METHOD),
        ({}, "code_challenge is required"),
        ({"callback_url": CALLBACK, "state": "s" * 2000}, "at most 1024 characters"),
        ({"callback_url": CALLBACK, "key_label": "a\x00b"}, "NUL"),
    ],
)
def test_bad_parameters_show_a_message_and_create_nothing(client, params, message):
    signed_in_user(client)
    for response in (client.get("/auth?" + urlencode(params)), client.post("/auth", {**params, "decision": "authorize"})):
        assert response.status_code == 400
        assert message in response.content.decode()
    assert not AuthCode.objects.exists()


@pytest.mark.parametrize("limit", ["1e999999", "-1", "NaN", "abc", "2000000"])
def test_bad_limit_is_a_message_and_no_code(client, limit):
    signed_in_user(client)
    response = authorize(client, limit=limit, callback_url=CALLBACK)
    assert response.status_code == 400
    assert "credit limit" in response.content.decode()
    assert not AuthCode.objects.exists()


def test_deny_redirects_with_access_denied_and_state(client):
    signed_in_user(client)
    response = authorize(client, decision="deny", callback_url="fudai://openrouter-callback?x=1", state="st8")
    assert response.status_code == 302
    assert response["Location"] == "fudai://openrouter-callback?x=1&error=access_denied&state=st8"
    assert not AuthCode.objects.exists()


def test_the_page_lets_its_form_redirect_to_the_callback_only(client):
    signed_in_user(client)
    response = client.get("/auth?" + urlencode({"callback_url": "http://127.0.0.1:4567/cb"}))
    assert "form-action 'self' http://127.0.0.1:4567;" in response["Content-Security-Policy"]
    assert "localhost:4567" in response.content.decode()


def test_headless_mode_shows_the_code(client, live_server_url):
    signed_in_user(client)
    verifier, challenge = pkce()
    response = authorize(client, code_challenge=challenge, code_challenge_method="S256", key_label="cli")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    code = page.split('data-testid="oauth-code">')[1].split("<")[0]
    assert code.startswith("auth_code_")
    answer = exchange(live_server_url, {"code": code, "code_verifier": verifier, "code_challenge_method": "S256"})
    assert answer.status_code == 200
    assert ApiKey.objects.get().name == "cli"


def test_the_decision_needs_the_csrf_token(live_server_url):
    client = Client(enforce_csrf_checks=True)
    signed_in_user(client)
    response = client.post("/auth", {"callback_url": CALLBACK, "decision": "authorize"})
    assert response.status_code == 403
    assert not AuthCode.objects.exists()


# --- POST /auth/keys/code ----------------------------------------------------------------------


def code_api(server, bundle, body: dict) -> httpx.Response:
    return httpx.post(f"{server.api}/auth/keys/code", json=body, headers=bundle.headers if bundle else {}, timeout=30)


def test_server_side_code_makes_a_key_with_the_requested_settings(live_server_url):
    bundle = make_key(credits="5")
    verifier, challenge = pkce()
    response = code_api(live_server_url, bundle, {
        "callback_url": "http://localhost:8123/cb", "code_challenge": challenge, "code_challenge_method": "S256",
        "limit": 3, "usage_limit_type": "weekly", "expires_at": "2031-01-01T00:00:00Z", "key_label": "agent",
    })
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/auth/keys/code", "post", 200, body)
    data = body["data"]
    assert isinstance(data["app_id"], int) and data["id"].startswith("auth_code_")
    answer = exchange(live_server_url, {"code": data["id"], "code_verifier": verifier, "code_challenge_method": "S256"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["user_id"] == bundle.account.public_id
    info = key_works(live_server_url, answer.json()["key"])
    assert (info["limit"], info["limit_reset"], info["expires_at"]) == (3, "weekly", "2031-01-01T00:00:00Z")
    assert ApiKey.objects.get(hash=hashlib.sha256(answer.json()["key"].encode()).hexdigest()).name == "agent"


def test_a_limited_key_cannot_mint_a_stronger_one(live_server_url):
    bundle = make_key(credits="5", limit="1")
    data = code_api(live_server_url, bundle, {"callback_url": CALLBACK, "limit": 50}).json()["data"]
    key = exchange(live_server_url, {"code": data["id"]}).json()["key"]
    assert key_works(live_server_url, key)["limit"] == 1
    data = code_api(live_server_url, bundle, {"callback_url": CALLBACK}).json()["data"]
    assert key_works(live_server_url, exchange(live_server_url, {"code": data["id"]}).json()["key"])["limit"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"limit": "1e999999"}, {"limit": -1}, {"limit": True}, {"limit": [1]}, {"limit": 10**12},
        {"key_label": "x" * 101}, {"key_label": 5}, {"callback_url": "javascript:alert(1)"},
        {"callback_url": "http://myapp.example/cb"}, {"callback_url": None}, {"callback_url": 7},
        {"code_challenge_method": "S512", "code_challenge": RFC_CHALLENGE}, {"code_challenge": "x"},
        {"usage_limit_type": "hourly"}, {"usage_limit_type": "daily", "limit": None},
        {"expires_at": "2020-01-01T00:00:00Z"}, {"expires_at": "tomorrow"}, {"expires_at": "2031-01-01T00:00:00+02:00"},
    ],
)
def test_code_api_bad_input_is_a_400(live_server_url, change):
    bundle = make_key()
    body = {"callback_url": CALLBACK, "limit": 1, **change}
    if change.get("limit", 0) is None:
        del body["limit"]
    assert_error(code_api(live_server_url, bundle, body), 400)
    assert not AuthCode.objects.exists()


def test_code_api_needs_a_key_and_another_accounts_workspace_is_403(live_server_url):
    assert_error(code_api(live_server_url, None, {"callback_url": CALLBACK}), 401)
    mine, other = make_key(), make_key()
    from accounts.presenters import workspace_id

    assert_error(code_api(live_server_url, mine, {"callback_url": CALLBACK,
                                                  "workspace_id": workspace_id(other.account)}), 403)
    ok = code_api(live_server_url, mine, {"callback_url": CALLBACK, "workspace_id": workspace_id(mine.account)})
    assert ok.status_code == 200


# --- cross-account ------------------------------------------------------------------------------


def test_another_users_oauth_key_is_not_theirs_to_see_or_revoke(client, live_server_url):
    signed_in_user(client)
    code = code_from(authorize(client, callback_url=CALLBACK, key_label="alice-app"))
    raw = exchange(live_server_url, {"code": code}).json()["key"]
    key = ApiKey.objects.get(hash=hashlib.sha256(raw.encode()).hexdigest())

    other = Client()
    signed_in_user(other)
    assert "alice-app" not in other.get("/settings/keys").content.decode()
    assert other.post(f"/settings/keys/{key.hash}/delete").status_code == 404
    assert other.post(f"/settings/keys/{key.hash}/toggle").status_code == 404
    key.refresh_from_db()
    assert not key.disabled
    # The other user's management key cannot reach it either.
    manager = make_key(management=True)
    response = httpx.get(f"{live_server_url.api}/keys/{key.hash}", headers=manager.headers)
    assert_error(response, 404)


# --- the official SDK ---------------------------------------------------------------------------


def test_openrouter_sdk_create_auth_code_and_exchange(live_server_url):
    bundle = make_key(credits="5")
    verifier, challenge = pkce()
    with OpenRouter(api_key=bundle.raw, server_url=live_server_url.api, timeout_ms=30_000) as client:
        created = client.o_auth.create_auth_code(
            callback_url="https://sdk.example/cb", code_challenge=challenge, code_challenge_method="S256",
            limit=2.0, usage_limit_type="monthly", key_label="sdk key",
        )
        assert created.data.id.startswith("auth_code_") and created.data.app_id > 0
        result = client.o_auth.exchange_auth_code_for_api_key(
            code=created.data.id, code_verifier=verifier, code_challenge_method="S256"
        )
        assert result.key.startswith("sk-or-v1-") and result.user_id == bundle.account.public_id
        with pytest.raises(errors.OpenRouterError) as refused:
            client.o_auth.exchange_auth_code_for_api_key(code=created.data.id, code_verifier=verifier)
        assert refused.value.status_code == 403
    assert key_works(live_server_url, result.key)["limit_reset"] == "monthly"
