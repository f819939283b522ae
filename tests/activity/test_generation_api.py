"""GET /generation?id= and ``manage.py create_api_key``."""

from __future__ import annotations

import hashlib
from io import StringIO

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import Account, ApiKey
from billing.models import LedgerEntry
from billing.money import usd_to_nanos
from billing.selectors import ledger_sum
from tests.factories import KeyBundle, make_key
from tests.openapi import validate_response
from tests.routing.test_chat_completions import multi_provider_model, stream_events

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello in five words."}]


def get_generation(server, bundle, generation_id: str | None) -> httpx.Response:
    params = {} if generation_id is None else {"id": generation_id}
    return httpx.get(f"{server.api}/generation", params=params, headers=bundle.headers, timeout=30)


def test_generation_matches_the_chat_answer(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    headers = {
        **bundle.headers,
        "HTTP-Referer": "https://myapp.example/",
        "X-Title": "My App",
        "User-Agent": "generation-test/1.0",
    }
    body = {"model": slug, "messages": HELLO, "max_tokens": 10, "user": "end-user-7"}
    answer = httpx.post(f"{gateway.api}/chat/completions", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    answer = answer.json()

    # No flush: the endpoint waits for a fresh id to be written.
    response = get_generation(gateway, bundle, answer["id"])
    assert response.status_code == 200, response.text
    validate_response("/generation", "get", 200, response.json())
    data = response.json()["data"]
    assert data["id"] == answer["id"]
    assert data["model"] == slug
    assert data["provider_name"] == answer["provider"] in {e.provider.name for e in endpoints}
    assert data["tokens_prompt"] == answer["usage"]["prompt_tokens"]
    assert data["tokens_completion"] == answer["usage"]["completion_tokens"]
    assert data["native_tokens_prompt"] == answer["usage"]["prompt_tokens"]
    assert data["total_cost"] == answer["usage"]["cost"] == data["usage"]
    assert data["streamed"] is False and data["cancelled"] is False
    assert data["finish_reason"] == answer["choices"][0]["finish_reason"]
    assert isinstance(data["latency"], int) and data["latency"] >= 0
    assert data["api_type"] == "completions"
    assert data["is_byok"] is False
    assert data["http_referer"] == "https://myapp.example/"
    assert data["origin"] == "https://myapp.example/"
    assert data["app_title"] == "My App"
    assert data["user_agent"] == "generation-test/1.0"
    assert data["external_user"] == "end-user-7"
    assert data["created_at"]
    attempts = data["provider_responses"]
    assert attempts and attempts[-1]["status"] == 200
    assert attempts[-1]["provider_name"] in {e.provider.name for e in endpoints}


def test_openrouter_title_header_wins_over_legacy_x_title(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    headers = {**bundle.headers, "X-OpenRouter-Title": "New Title", "X-Title": "Old Title"}
    body = {"model": slug, "messages": HELLO, "max_tokens": 4}
    answer = httpx.post(f"{gateway.api}/chat/completions", json=body, headers=headers, timeout=30).json()
    data = get_generation(gateway, bundle, answer["id"]).json()["data"]
    assert data["app_title"] == "New Title"
    assert data["http_referer"] is None and data["origin"] == ""


def test_streamed_generation(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    body = {"model": slug, "messages": HELLO, "max_tokens": 8, "stream": True}
    with httpx.stream(
        "POST", f"{gateway.api}/chat/completions", json=body, headers=bundle.headers, timeout=30
    ) as response:
        assert response.status_code == 200
        generation_id = response.headers["x-generation-id"]
        events = stream_events(response)
    usage = events[-2]["usage"]
    response = get_generation(gateway, bundle, generation_id)
    assert response.status_code == 200, response.text
    validate_response("/generation", "get", 200, response.json())
    data = response.json()["data"]
    assert data["streamed"] is True
    assert data["total_cost"] == usage["cost"]
    assert data["tokens_completion"] == usage["completion_tokens"]
    assert data["provider_name"] == events[0]["provider"] in {e.provider.name for e in endpoints}
    assert data["latency"] is not None and data["generation_time"] is not None


def test_another_key_of_the_same_account_can_read_it(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    sibling = make_key(account=bundle.account, name="sibling")
    answer = httpx.post(
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": HELLO, "max_tokens": 4},
        headers=bundle.headers,
        timeout=30,
    ).json()
    assert get_generation(gateway, sibling, answer["id"]).status_code == 200


@pytest.mark.parametrize(
    "generation_id",
    ["gen-1000000000-abcdefghijklmnop", "not-a-generation-id", "gen-123-x", "chatcmpl-abc"],
)
def test_unknown_generation_is_404(gateway, generation_id):
    bundle = make_key()
    response = get_generation(gateway, bundle, generation_id)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["error"]["code"] == 404
    validate_response("/generation", "get", 404, body)


@pytest.mark.parametrize("generation_id", [None, ""])
def test_missing_id_is_400(gateway, generation_id):
    bundle = make_key()
    response = get_generation(gateway, bundle, generation_id)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == 400
    assert "id" in response.json()["error"]["message"]


# --- manage.py create_api_key ------------------------------------------------------------------


def run_create_api_key(*args: str) -> tuple[str, list[str]]:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=StringIO())
    lines = out.getvalue().strip().splitlines()
    return lines[-1], lines


def key_of(raw: str) -> ApiKey:
    return ApiKey.objects.select_related("account").get(hash=hashlib.sha256(raw.encode()).hexdigest())


def test_create_api_key_creates_user_account_credits_and_key(gateway):
    raw, lines = run_create_api_key("New.Person@Example.com", "--credits", "12.5", "--name", "cli")
    assert raw.startswith("sk-or-v1-") and len(raw) == len("sk-or-v1-") + 64
    assert "created user" in lines[0] and "12.5" in lines[0]
    user = get_user_model().objects.get(email="new.person@example.com")
    key = key_of(raw)
    assert key.name == "cli" and key.is_management is False and key.limit is None
    account = key.account
    assert account.owner == user and account.kind == Account.Kind.PERSONAL
    assert account.balance == usd_to_nanos("12.5") == account.total_credits
    assert account.balance == ledger_sum(account_id=account.id)
    entries = list(LedgerEntry.objects.filter(account=account))
    assert [(e.kind, e.amount) for e in entries] == [(LedgerEntry.Kind.GRANT, usd_to_nanos("12.5"))]

    # The printed key works against the live server at once.
    slug, _ = multi_provider_model()
    bundle = KeyBundle(raw=raw, key=key, account=account)
    response = httpx.post(
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": HELLO, "max_tokens": 4},
        headers=bundle.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_create_api_key_twice_reuses_the_user_and_adds_credits(gateway):
    first, _ = run_create_api_key("twice@example.com", "--credits", "1")
    second, lines = run_create_api_key("twice@example.com", "--credits", "2")
    assert first != second
    assert "found user" in lines[0]
    assert key_of(first).account_id == key_of(second).account_id
    account = key_of(second).account
    assert account.balance == usd_to_nanos("3") == ledger_sum(account_id=account.id)
    assert get_user_model().objects.filter(email="twice@example.com").count() == 1


def test_create_api_key_management_and_limit(gateway):
    raw, lines = run_create_api_key("admin@example.com", "--management")
    assert "management key" in lines[0]
    manager = key_of(raw)
    assert manager.is_management is True
    assert manager.account.balance == 0 and ledger_sum(account_id=manager.account_id) == 0
    response = httpx.get(f"{gateway.api}/credits", headers={"Authorization": f"Bearer {raw}"}, timeout=30)
    assert response.status_code == 200 and response.json()["data"] == {"total_credits": 0, "total_usage": 0}

    limited_raw, _ = run_create_api_key("admin@example.com", "--limit", "0.5", "--limit-reset", "daily")
    limited = key_of(limited_raw)
    assert limited.is_management is False
    assert limited.limit == usd_to_nanos("0.5") and limited.limit_reset == "daily"
    data = httpx.get(f"{gateway.api}/key", headers={"Authorization": f"Bearer {limited_raw}"}, timeout=30).json()
    assert data["data"]["limit"] == 0.5 and data["data"]["limit_remaining"] == 0.5


@pytest.mark.parametrize(
    "args",
    [("not-an-email",), ("x@example.com", "--credits", "-1"), ("x@example.com", "--limit", "abc")],
    ids=["bad-email", "negative-credits", "bad-limit"],
)
def test_create_api_key_rejects_bad_input(gateway, args):
    with pytest.raises(CommandError):
        call_command("create_api_key", *args, stdout=StringIO(), stderr=StringIO())
    assert not ApiKey.objects.exists()
