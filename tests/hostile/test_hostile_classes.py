"""One regression test per class of hostile input that used to answer 5xx (issue 7 §2), over real HTTP
to the live server: each must now be a 400-class answer in OpenRouter's envelope (or, on a page, a
message), and nothing may be half-saved."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ApiKey
from activity.models import Generation
from billing import money
from billing.crypto import SIGNATURE_HEADER, signature_header
from billing.models import BillingProfile, Purchase, WebhookEvent
from routing.providers import adapter_for
from routing.providers.base import InvalidRequest
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_AMOUNTS = ["1e999999", "-1e999999", "NaN", "Infinity", "-Infinity", "sNaN"]


def envelope(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == status and body["error"]["message"]
    return body["error"]["message"]


def post_raw(url: str, raw: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url, content=raw, headers={"Content-Type": "application/json", **(headers or {})}, timeout=30)


def chat(server, bundle, body: dict) -> httpx.Response:
    return httpx.post(f"{server.api}/chat/completions", json=body, headers=bundle.headers, timeout=30)


def user_says(text="hi", **extra) -> dict:
    return {"model": "openai/gpt-4o-mini", "max_tokens": 4, "messages": [{"role": "user", "content": text}], **extra}


# --- decimal overflow in every money input ------------------------------------------------------------


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
def test_money_parser_refuses_overflow_and_non_finite_amounts(amount):
    for parse in (money.usd_input_to_nanos, money.usd_input_to_cents, money.usd_to_nanos):
        with pytest.raises(money.MoneyError):
            parse(amount)
    with pytest.raises(money.MoneyError):
        money.usd_input_to_nanos(10**30)
    with pytest.raises(money.MoneyError):
        money.usd_input_to_nanos(float("inf"))


def test_key_limits_refuse_overflowing_amounts(gateway):
    manager = make_key(management=True)
    target = make_key(account=manager.account)
    for amount in HOSTILE_AMOUNTS:
        response = httpx.post(f"{gateway.api}/keys", json={"name": "n", "limit": amount}, headers=manager.headers)
        assert "'limit'" in envelope(response, 400)
        response = httpx.patch(f"{gateway.api}/keys/{target.key.hash}", json={"limit": amount}, headers=manager.headers)
        assert "'limit'" in envelope(response, 400)
    for number in (b"1e999", b"-1e999", b"1" + b"0" * 400):
        response = post_raw(f"{gateway.api}/keys", b'{"name": "n", "limit": ' + number + b"}", manager.headers)
        envelope(response, 400)
    assert ApiKey.objects.filter(account=manager.account).count() == 2  # nothing half-saved


def test_max_price_refuses_overflowing_amounts(gateway):
    bundle = make_key(credits="1")
    for amount in [*HOSTILE_AMOUNTS, 10**30]:
        response = chat(gateway, bundle, user_says(provider={"max_price": {"prompt": amount}}))
        assert "provider.max_price.prompt" in envelope(response, 400)
    response = post_raw(f"{gateway.api}/chat/completions",
                        json.dumps(user_says(provider={"max_price": {"completion": "X"}})).replace('"X"', "1e999").encode(),
                        bundle.headers)
    envelope(response, 400)
    response = httpx.get(f"{gateway.api}/models", params={"max_price": "1e999999"})
    assert "max_price" in envelope(response, 400)


def signed_in_client(account) -> Client:
    client = Client()
    client.force_login(account.owner)
    return client


def test_purchase_quote_and_auto_topup_refuse_overflowing_amounts(live_server_url):
    bundle = make_key(credits="0")
    cookies = {"sessionid": signed_in_client(bundle.account).cookies["sessionid"].value, "csrftoken": "x" * 32}
    csrf = {"X-CSRFToken": "x" * 32}
    with httpx.Client(base_url=live_server_url.url, cookies=cookies, headers=csrf, timeout=30) as client:
        for amount in HOSTILE_AMOUNTS:
            envelope(client.get("/settings/credits/quote", params={"amount": amount}), 400)
            envelope(client.post("/settings/credits/card/purchase", data={"amount": amount}), 400)
            for path, data in (("/settings/credits/crypto/purchase", {"amount": amount}),
                               ("/settings/credits/auto-topup", {"threshold": amount, "amount": "10"}),
                               ("/settings/credits/auto-topup", {"threshold": "5", "amount": amount})):
                response = client.post(path, data=data)
                assert response.status_code == 302 and response.headers["location"] == "/settings/credits", path
    assert not Purchase.objects.filter(account=bundle.account).exists()
    assert not BillingProfile.objects.filter(account=bundle.account, auto_topup_threshold__gt=0).exists()


# --- wrong types nested inside valid objects ------------------------------------------------------------

NESTED_WRONG_TYPES = {
    "provider.quantizations": {"provider": {"quantizations": [[]]}},
    "limit_reset": None,  # the keys API: below
    "tools[0].function": {"tools": [{"type": "function", "function": 5}]},
    "tool_calls": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [5]}]},
    "tool_choice": {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"function": 5}},
    "response_format.json_schema": {"response_format": {"type": "json_schema", "json_schema": 5}},
    "role": {"messages": [{"role": {}, "content": "hi"}]},
    "image_url": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]},
    "tool_call_id": {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]},
    "content[0]": {"messages": [{"role": "user", "content": [5]}]},
    "tools[0]": {"tools": [5]},
    "reasoning.effort": {"reasoning": {"effort": []}},
    "plugins": {"plugins": [{"id": "web", "max_results": "x"}]},
}


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "google/gemini-2.0-flash-001"])
def test_nested_wrong_types_are_a_400_naming_the_field_before_any_provider(gateway, simulator, model):
    bundle = make_key(credits="1")
    for field, extra in NESTED_WRONG_TYPES.items():
        if extra is None:
            continue
        response = chat(gateway, bundle, {**user_says(), "model": model, **extra})
        message = envelope(response, 400)
        assert field.split("[")[0].split(".")[0] in message, (field, message)
    assert not Generation.objects.filter(account=bundle.account).exists()  # no provider was tried


def test_a_tool_message_without_tool_call_id_is_a_400_whatever_its_content(gateway):
    bundle = make_key(credits="1")
    for content in ("42", [{"type": "text", "text": "42"}], None):
        body = user_says(messages=[{"role": "user", "content": "hi"}, {"role": "tool", "content": content}])
        assert "tool_call_id" in envelope(chat(gateway, bundle, body), 400)


def test_limit_reset_of_the_wrong_type_is_a_400(gateway):
    manager = make_key(management=True)
    for value in ([], {}, [[]], 5, True):
        response = httpx.post(f"{gateway.api}/keys", json={"name": "n", "limit_reset": value}, headers=manager.headers)
        assert "limit_reset" in envelope(response, 400)


def test_adapters_answer_400_for_anything_that_slips_past_the_door():
    """Called with a body the parser would refuse, an adapter raises InvalidRequest (a 400), never a TypeError."""
    bodies = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}, 7]}]},
        {"messages": [{"role": "assistant", "tool_calls": [5]}]},
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": 5}]},
        {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": 5}},
        {"messages": [{"role": "user", "content": "hi"}], "x": json.loads("[" * 300 + "]" * 300)},
    ]
    for dialect in ("anthropic", "google", "openai"):
        refused = 0
        for body in bodies:
            try:
                adapter_for(dialect).request(body=body, upstream_model="m", base_url="http://u", api_key="k", stream=False)
            except InvalidRequest as exc:
                assert exc.status == 400
                refused += 1
        assert refused >= 1, dialect


# --- query parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "99999999999999999999", "-99999999999999999999", "1e3"])
def test_integer_query_parameters_refuse_non_ascii_and_huge_numbers(gateway, value):
    manager = make_key(management=True)
    for path in ("/keys", "/byok", "/models", "/models/count"):
        name = "context" if path == "/models/count" else "offset"
        response = httpx.get(f"{gateway.api}{path}", params={name: value}, headers=manager.headers)
        if path == "/models/count" and response.status_code == 200:
            continue  # /models/count ignores parameters it does not filter on
        envelope(response, 400)
    envelope(httpx.get(f"{gateway.api}/generation", params={"id": value}, headers=manager.headers), 404)
    envelope(httpx.get(f"{gateway.api}/activity", params={"date": value}, headers=manager.headers), 400)


def test_staff_pages_take_any_query_without_a_5xx(live_server_url):
    bundle = make_key(credits="1")
    get_user_model().objects.filter(id=bundle.account.owner_id).update(is_staff=True, is_superuser=True)
    cookies = {"sessionid": signed_in_client(bundle.account).cookies["sessionid"].value}
    account = bundle.account
    pages = [
        ("/staff/", "q", "Look up an account"),
        ("/staff/ledger", "q", "Look up an account"),  # the old address redirects to the console's search
        (f"/staff/accounts/{account.id}/ledger", "before", f"Staff: ledger of {account.public_id}"),
        (f"/staff/ledger/{account.id}", "before", f"Staff: ledger of {account.public_id}"),
        ("/staff/audit", "account", "Audit log"),
        ("/staff/audit", "before", "Audit log"),
        ("/staff/dead-letters", "q", "Settlement dead letters"),
    ]
    with httpx.Client(base_url=live_server_url.url, cookies=cookies, timeout=30, follow_redirects=True) as client:
        for value in ("²", "٣", "99999999999999999999", "999999999999999999", "-1", "", "%FF", "\x00"):
            for path, name, title in pages:
                response = client.get(path, params={name: value})
                assert response.status_code == 200, (path, name, value, response.status_code)
                assert title in response.text, (path, name, value)


# --- bodies ---------------------------------------------------------------------------------------------


def test_json_nested_too_deep_is_a_400_everywhere(gateway):
    bundle = make_key(credits="1")
    manager = make_key(account=bundle.account, management=True)
    very_deep = b"[" * 100_000 + b"]" * 100_000
    deeper_than_the_writer = json.dumps(user_says(metadata={"a": json.loads('{"a":' * 300 + "1" + "}" * 300)})).encode()
    for raw in (very_deep, deeper_than_the_writer):
        envelope(post_raw(f"{gateway.api}/chat/completions", raw, bundle.headers), 400)
        envelope(post_raw(f"{gateway.api}/completions", raw, bundle.headers), 400)
        envelope(post_raw(f"{gateway.api}/keys", raw, manager.headers), 400)
        envelope(post_raw(f"{gateway.api}/byok", raw, manager.headers), 400)
    deep_name = b'{"name": ' + b"[" * 300 + b"]" * 300 + b"}"
    envelope(post_raw(f"{gateway.api}/keys", deep_name, manager.headers), 400)


def test_lone_surrogates_are_a_400(gateway):
    bundle = make_key(credits="1")
    manager = make_key(account=bundle.account, management=True)
    envelope(post_raw(f"{gateway.api}/keys", b'{"name": "\\ud800"}', manager.headers), 400)
    envelope(post_raw(f"{gateway.api}/keys", b'{"name": "\xed\xa0\x80"}', manager.headers), 400)
    envelope(post_raw(f"{gateway.api}/byok", b'{"provider": "openai", "key": "\\udfff"}', manager.headers), 400)
    envelope(post_raw(f"{gateway.api}/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
                      bundle.headers), 400)
    assert ApiKey.objects.filter(account=bundle.account).count() == 2


def test_nul_characters_anywhere_in_a_stored_body_are_a_400_and_nothing_changes(gateway):
    """PostgreSQL cannot store NUL: every DRF body is refused whole, whatever the field or depth
    (CI once found a 500 from a NUL in a BYOK credential's name, sent by PATCH)."""
    manager = make_key(management=True)
    created = httpx.post(f"{gateway.api}/byok", json={"provider": "openai", "key": "sk-real", "name": "ok"},
                         headers=manager.headers)
    assert created.status_code == 201, created.text
    byok_id = created.json()["data"]["id"]
    bodies = [
        ("post", "/keys", b'{"name": "a\\u0000b"}'),
        ("post", "/keys", b'{"name": "n", "\\u0000": 1}'),
        ("patch", f"/byok/{byok_id}", b'{"name": "bad\\u0000"}'),
        ("patch", f"/byok/{byok_id}", b'{"allowed_user_ids": ["\\t", "x\\u0000"]}'),
        ("patch", f"/byok/{byok_id}", b'{"name": "n", "extra": {"deep": [[{"k": "\\u0000"}]]}}'),
        ("post", "/guardrails", b'{"name": "g\\u0000"}'),
        ("post", "/byok", b'{"provider": "openai", "key": "sk-\\u0000"}'),
    ]
    for method, path, raw in bodies:
        response = httpx.request(method.upper(), f"{gateway.api}{path}", content=raw,
                                 headers={**manager.headers, "Content-Type": "application/json"}, timeout=30)
        assert "NUL" in envelope(response, 400), (method, path)
    # An escaped backslash before "u0000" is ordinary text, not a NUL.
    fine = httpx.patch(f"{gateway.api}/byok/{byok_id}", content=b'{"name": "a\\\\u0000"}',
                       headers={**manager.headers, "Content-Type": "application/json"})
    assert fine.status_code == 200 and fine.json()["data"]["name"] == "a\\u0000", fine.text
    assert ApiKey.objects.filter(account=manager.account).count() == 1  # no key was half-made


def test_bodies_over_the_limit_are_a_413_in_the_envelope_on_every_endpoint(gateway, settings):
    bundle = make_key(credits="1")
    manager = make_key(account=bundle.account, management=True)
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    big = b'{"name": "' + b"x" * (max(django_limit, settings.GATEWAY_MAX_BODY_BYTES) + 10) + b'"}'
    for path, headers in (("/api/v1/chat/completions", bundle.headers), ("/api/v1/completions", bundle.headers),
                          ("/api/v1/keys", manager.headers), ("/api/v1/byok", manager.headers),
                          (f"/api/v1/keys/{bundle.key.hash}", manager.headers),
                          ("/billing/webhooks/stripe", {"Stripe-Signature": "t=1,v1=x"}),
                          ("/billing/webhooks/crypto", {SIGNATURE_HEADER: "t=1,v1=x"}),
                          ("/settings/credits/card/purchase", {}), ("/accounts/login/", {})):
        method = "PATCH" if "/keys/" in path else "POST"
        response = httpx.request(method, f"{gateway.url}{path}", content=big, timeout=60,
                                 headers={"Content-Type": "application/json", **headers})
        envelope(response, 413)

    def chunks():  # no Content-Length: the body is streamed
        for _ in range(django_limit // 65536 + 2):
            yield b"x" * 65536

    response = httpx.post(f"{gateway.url}/api/v1/keys", content=chunks(), headers=manager.headers, timeout=60)
    envelope(response, 413)


# --- webhooks --------------------------------------------------------------------------------------------


def stripe_signature(payload: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(settings.STRIPE_WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def test_webhooks_refuse_non_utf8_bodies_and_absurd_timestamps_without_a_5xx(live_server_url):
    url = live_server_url.url
    non_utf8 = b'{"id": "evt_1", "type": "payment_intent.succeeded", "x": "\xff\xfe"}'
    now = int(time.time())
    stripe_headers = [
        {"Stripe-Signature": "t=1,v1=abc"},
        {"Stripe-Signature": stripe_signature(non_utf8, now)},
        {"Stripe-Signature": "t=99999999999999999999999,v1=abc"},
        {"Stripe-Signature": "t=-99999999999999999999,v1=abc"},
        {"Stripe-Signature": "t=²,v1=abc".encode()},
        {"Stripe-Signature": b"t=1,v1=\xff\xfe"},
    ]
    for headers in stripe_headers:
        envelope(post_raw(f"{url}/billing/webhooks/stripe", non_utf8, headers), 400)
    valid = b'{"id": "evt_absurd", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    for timestamp in (10**20, -(10**20), 0):
        headers = {"Stripe-Signature": stripe_signature(valid, timestamp)}
        envelope(post_raw(f"{url}/billing/webhooks/stripe", valid, headers), 400)
    secret = settings.CRYPTO_WEBHOOK_SECRET
    for payload, header in (
        (non_utf8, signature_header(non_utf8, secret)),  # signed, but not JSON we accept
        (b'{"id": "evt_s", "data": {"id": "\\ud800"}}', signature_header(b'{"id": "evt_s", "data": {"id": "\\ud800"}}', secret)),
        (valid, signature_header(valid, secret, timestamp=10**20)),
        (valid, "t=nan,v1=abc"),
        (valid, "t=99999999999999999999999,v1=abc"),
    ):
        envelope(post_raw(f"{url}/billing/webhooks/crypto", payload, {SIGNATURE_HEADER: header}), 400)
    assert not WebhookEvent.objects.exists()  # nothing refused is stored


def test_a_request_no_provider_can_express_is_a_400_not_a_503(gateway):
    """Every endpoint of the model refused to translate it (a file given only by id, for Gemini): the
    client's mistake, answered 400 after the attempts, not 'no provider could serve'."""
    bundle = make_key(credits="1")
    body = user_says(model="google/gemini-2.0-flash-001",
                     messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}])
    message = envelope(chat(gateway, bundle, body), 400)
    assert "file_data" in message


@pytest.mark.parametrize("field,value", [("n", 0), ("n", -1), ("n", 10**6), ("max_tokens", 2**70), ("seed", 2**70),
                                         ("top_k", 2**64)])
def test_integers_out_of_any_sane_range_are_a_400_at_the_door(field, value):
    from openrouter_site.errors import BadRequest
    from routing.request_parsing import parse_body, parse_chat

    with pytest.raises(BadRequest, match=field):
        parse_chat(parse_body(json.dumps({field: value, "messages": [{"role": "user", "content": "hi"}]}).encode()), "m")
