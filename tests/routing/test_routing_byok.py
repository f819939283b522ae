"""Bring-your-own-key through the live gateway: the account's provider key is used first (or after
shared capacity for fallback keys, or instead of it with "always use"), the provider sees that key,
and OpenRouter charges only its fee: nothing inside the monthly allowance, 5% of list price past it."""

from __future__ import annotations

import httpx
import pytest

from accounts.models import ProviderKey
from accounts.services import provider_key_create
from billing.money import nanos_to_usd_number, percent_of
from routing.models import Provider
from tests.factories import make_key
from tests.routing.gateway_helpers import endpoints_of, generation, post, publish_health, stream
from tests.routing.test_chat_completions import assert_ledger_consistent, expected_cost

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"  # deepinfra is the cheapest of five
USER_KEY = "sk-user-deepinfra-0123456789abcdef"


def _key(bundle, provider: str, secret: str = USER_KEY, **options) -> ProviderKey:
    return provider_key_create(account=bundle.account, provider=Provider.objects.get(slug=provider), key=secret, **options)


def _attempts(generation_id: str) -> list[tuple[str, int, bool]]:
    return [(a["provider_name"], a["status"], a["is_byok"]) for a in generation(generation_id).provider_responses]


@pytest.mark.parametrize("streaming", [False, True])
def test_the_users_key_is_used_first_and_costs_nothing_inside_the_allowance(gateway, simulator, streaming):
    bundle = make_key(credits="5")
    row = _key(bundle, "deepinfra")
    assert USER_KEY not in row.encrypted_key and row.label != USER_KEY and row.label.endswith(USER_KEY[-4:])
    deepinfra = endpoints_of(LLAMA)[0]
    # BYOK comes first even ahead of provider.order.
    body = {"model": LLAMA, "max_tokens": 6, "provider": {"order": ["groq"]}}
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
        assert {e["provider"] for e in events[:-1]} == {"DeepInfra"}
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        usage, generation_id = response.json()["usage"], response.json()["id"]
        assert response.json()["provider"] == "DeepInfra"
    assert simulator.last_headers("deepinfra")["authorization"] == f"Bearer {USER_KEY}"
    assert simulator.stats("groq")["requests"] == 0
    list_price = expected_cost(deepinfra, usage)
    assert usage["is_byok"] is True and usage["cost"] == 0
    assert usage["cost_details"]["upstream_inference_cost"] == nanos_to_usd_number(list_price) > 0
    record = generation(generation_id)
    assert record.is_byok and record.cost == 0 and record.upstream_cost == list_price
    assert _attempts(generation_id) == [("DeepInfra", 200, True)]
    data = httpx.get(f"{gateway.api}/generation", params={"id": generation_id}, headers=bundle.headers, timeout=30).json()["data"]
    assert data["is_byok"] is True and data["upstream_inference_cost"] == nanos_to_usd_number(list_price)
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


def test_past_the_free_requests_the_fee_is_five_percent_of_list_price(gateway, simulator, settings):
    settings.BYOK_FREE_REQUESTS_PER_MONTH = 2
    bundle = make_key(credits="5")
    _key(bundle, "deepinfra")
    deepinfra = endpoints_of(LLAMA)[0]
    costs = []
    for i in range(4):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 20, "messages": [{"role": "user", "content": f"question {i}"}]})
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert usage["is_byok"] is True
        list_price = expected_cost(deepinfra, usage)
        fee = percent_of(list_price, 5)
        assert usage["cost_details"]["upstream_inference_cost"] == nanos_to_usd_number(list_price)
        record = generation(response.json()["id"])
        costs.append((record.cost, fee))
        assert usage["cost"] == nanos_to_usd_number(record.cost)
    assert [c for c, _ in costs[:2]] == [0, 0]
    assert [c for c, _ in costs[2:]] == [f for _, f in costs[2:]] and all(f > 0 for _, f in costs[2:])
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9 - sum(c for c, _ in costs)
    # Other accounts have their own allowance.
    other = make_key(credits="5")
    _key(other, "deepinfra")
    response = post(gateway, other, {"model": LLAMA, "max_tokens": 5})
    assert response.json()["usage"]["cost"] == 0


def test_anthropic_dialect_providers_get_the_key_in_their_own_header(gateway, simulator):
    bundle = make_key(credits="5")
    _key(bundle, "anthropic", "sk-ant-user-key-000111222333")
    response = post(gateway, bundle, {"model": "anthropic/claude-3.5-haiku", "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "Anthropic" and response.json()["usage"]["is_byok"] is True
    assert simulator.last_headers("anthropic")["x-api-key"] == "sk-ant-user-key-000111222333"


def test_a_failing_byok_attempt_falls_back_to_shared_capacity_unless_always_use(gateway, simulator):
    simulator.set("deepinfra", fail="503")
    body = {"model": LLAMA, "max_tokens": 5, "provider": {"sort": "price"}}

    plain = make_key(credits="5")
    _key(plain, "deepinfra")
    response = post(gateway, plain, body)
    assert response.status_code == 200 and response.json()["provider"] == "Groq"
    assert response.json()["usage"]["is_byok"] is False
    assert _attempts(response.json()["id"]) == [("DeepInfra", 503, True), ("DeepInfra", 503, False), ("Groq", 200, False)]

    always = make_key(credits="5")
    _key(always, "deepinfra", always_use=True)
    response = post(gateway, always, body)
    assert response.status_code == 200 and response.json()["provider"] == "Groq"
    # OpenRouter's own DeepInfra capacity is skipped; other providers still serve.
    assert _attempts(response.json()["id"]) == [("DeepInfra", 503, True), ("Groq", 200, False)]
    groq = endpoints_of(LLAMA)[1]
    assert generation(response.json()["id"]).cost == expected_cost(groq, response.json()["usage"])

    # A model only that provider serves: nothing else to try.
    simulator.set("mistral", fail="503")
    _key(always, "mistral", "mistral-user-key-000000000", always_use=True)
    response = post(gateway, always, {"model": "mistralai/mistral-large-2411", "max_tokens": 5})
    assert response.status_code == 503
    assert [(e["provider"]) for e in response.json()["error"]["metadata"]["previous_errors"]] == ["Mistral"]
    assert simulator.stats("mistral")["requests"] == 1
    assert_ledger_consistent(always.account)


def test_a_fallback_key_is_tried_after_shared_capacity(gateway, simulator):
    bundle = make_key(credits="5")
    _key(bundle, "mistral", "mistral-user-key-111111111", is_fallback=True)
    slug = "mistralai/mistral-large-2411"
    response = post(gateway, bundle, {"model": slug, "max_tokens": 5})
    assert response.status_code == 200 and response.json()["usage"]["is_byok"] is False
    assert simulator.last_headers("mistral")["authorization"] == "Bearer simulator"

    simulator.set("mistral", fail="503", fail_count=1)
    response = post(gateway, bundle, {"model": slug, "max_tokens": 5})
    assert response.status_code == 200 and response.json()["usage"]["is_byok"] is True
    assert simulator.last_headers("mistral")["authorization"] == "Bearer mistral-user-key-111111111"
    assert _attempts(response.json()["id"]) == [("Mistral", 503, False), ("Mistral", 200, True)]
    assert response.json()["usage"]["cost"] == 0
    assert_ledger_consistent(bundle.account)


def test_keys_restricted_to_other_models_or_disabled_are_not_used(gateway, simulator):
    bundle = make_key(credits="5")
    _key(bundle, "deepinfra", "sk-only-for-another-model-000", allowed_models=["mistralai/mistral-nemo"])
    _key(bundle, "groq", "sk-disabled-groq-key-00000000", disabled=True)
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.status_code == 200 and response.json()["usage"]["is_byok"] is False
    assert simulator.last_headers("deepinfra")["authorization"] == "Bearer simulator"
    response = post(gateway, bundle, {"model": "mistralai/mistral-nemo", "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.json()["usage"]["is_byok"] is True
    assert simulator.last_headers("deepinfra")["authorization"] == "Bearer sk-only-for-another-model-000"


def test_a_users_refused_key_does_not_mark_the_provider_failing_for_everyone(gateway, simulator):
    bundle = make_key(credits="5")
    _key(bundle, "deepinfra")
    deepinfra = endpoints_of(LLAMA)[0]
    for _ in range(3):
        simulator.set("deepinfra", fail="429", fail_count=1)  # the user's key is rate limited; shared capacity answers
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"sort": "price"}})
        assert response.status_code == 200 and response.json()["usage"]["is_byok"] is False
        assert _attempts(response.json()["id"]) == [("DeepInfra", 429, True), ("DeepInfra", 200, False)]
    health = publish_health(lambda h: deepinfra.id in h)[deepinfra.id]
    assert not health.recently_failing and health.uptime_5m == 100.0
    # Another account's requests are still load balanced onto DeepInfra's shared capacity.
    other = make_key(credits="5")
    response = post(gateway, other, {"model": LLAMA, "max_tokens": 3, "provider": {"sort": "price"}})
    assert response.json()["provider"] == "DeepInfra"
