"""Model variants (:free, :thinking, :nitro, :floor, :exacto, :online, :extended) and the routers
openrouter/auto and openrouter/free, through the live gateway."""

from __future__ import annotations

import time
import types

import httpx
import pytest

from activity.models import Generation
from billing.models import CreditLot, LedgerEntry
from billing.money import nanos_to_usd_number, usd_to_nanos
from billing.services import credits_grant
from routing import ratelimits
from routing.models import Endpoint
from routing.plugins.web_search import SIMULATED_PRICE
from routing.stats import health_snapshot, stats_record
from tests.factories import make_account, make_key
from tests.routing.gateway_helpers import (
    endpoints_of,
    error_of,
    generation,
    make_test_model,
    post,
    publish_health,
    stream,
)
from tests.routing.test_chat_completions import assert_ledger_consistent, expected_cost

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"
FREE_LLAMA = "meta-llama/llama-3.3-70b-instruct:free"  # together/free, price 0


@pytest.fixture
def frozen_clock(monkeypatch):
    """The free-model limiter's clock stands still in the middle of a minute (no window rolls over)."""
    now = (int(time.time()) // 60) * 60 + 30.0
    monkeypatch.setattr(ratelimits, "time", types.SimpleNamespace(time=lambda: now))
    return now


def _purchase(account, usd: str) -> None:
    credits_grant(
        account=account,
        amount=usd_to_nanos(usd),
        idempotency_key=f"test-purchase:{account.id}:{usd}",
        kind=LedgerEntry.Kind.PURCHASE,
        lot_source=CreditLot.Source.CARD,
    )


# --- :free -----------------------------------------------------------------------------------------------


def test_free_variant_is_free_and_the_21st_request_in_a_minute_is_429(gateway, simulator, frozen_clock):
    bundle = make_key(credits="1")
    simulator.set("together", fail="503", fail_count=3)  # failed requests count too
    statuses = [post(gateway, bundle, {"model": FREE_LLAMA, "max_tokens": 3}).status_code for _ in range(20)]
    assert statuses == [503] * 3 + [200] * 17
    response = post(gateway, bundle, {"model": FREE_LLAMA, "max_tokens": 3})
    assert response.status_code == 429
    minute_end_ms = (int(frozen_clock) // 60 + 1) * 60_000
    assert response.headers["x-ratelimit-limit"] == "20"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(minute_end_ms)
    assert response.headers["retry-after"] == "30"
    error = error_of(response)
    assert error["code"] == 429 and error["message"] == "Rate limit exceeded: free-models-per-min."
    assert error["metadata"]["headers"] == {
        "X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(minute_end_ms)
    }
    assert simulator.stats("together")["requests"] == 20  # the refused one never went upstream
    # Paid models are not limited; the free ones cost nothing.
    assert post(gateway, bundle, {"model": LLAMA, "max_tokens": 3}).status_code == 200
    assert_ledger_consistent(bundle.account)
    free = Generation.objects.filter(account_id=bundle.account.id, model=FREE_LLAMA)
    assert free.count() == 17 and {g.cost for g in free} == {0}


def test_free_daily_limit_rises_once_ten_dollars_were_bought(gateway, simulator, frozen_clock, monkeypatch):
    monkeypatch.setattr(ratelimits, "FREE_MODEL_PER_DAY", 3)
    monkeypatch.setattr(ratelimits, "FREE_MODEL_PER_DAY_PAID", 5)
    never_bought = make_key(credits="1")
    almost = make_key(account=make_account(credits="0"))
    _purchase(almost.account, "9.99")
    bought = make_key(account=make_account(credits="0"))
    _purchase(bought.account, "10")

    def run(bundle, count: int) -> list[int]:
        return [post(gateway, bundle, {"model": FREE_LLAMA, "max_tokens": 2}).status_code for _ in range(count)]

    assert run(never_bought, 4) == [200, 200, 200, 429]
    response = post(gateway, never_bought, {"model": FREE_LLAMA, "max_tokens": 2})
    assert response.status_code == 429
    assert error_of(response)["message"].startswith("Rate limit exceeded: free-models-per-day. Add 10 credits")
    assert response.headers["x-ratelimit-limit"] == "3" and response.headers["x-ratelimit-remaining"] == "0"
    day_end_ms = (int(frozen_clock) // 86_400 + 1) * 86_400_000
    assert response.headers["x-ratelimit-reset"] == str(day_end_ms)

    assert run(almost, 4) == [200, 200, 200, 429]
    assert run(bought, 6) == [200] * 5 + [429]
    response = post(gateway, bought, {"model": FREE_LLAMA, "max_tokens": 2})
    assert error_of(response)["message"] == "Rate limit exceeded: free-models-per-day-high-balance."
    assert response.headers["x-ratelimit-limit"] == "5"
    # Limits are per account, not per key.
    second_key = make_key(account=bought.account)
    assert post(gateway, second_key, {"model": FREE_LLAMA, "max_tokens": 2}).status_code == 429


# --- :thinking, :nitro, :floor, :exacto, :extended ---------------------------------------------------------


def test_thinking_variant_turns_reasoning_on_upstream(gateway, simulator):
    bundle = make_key(credits="5")
    slug = "anthropic/claude-3.7-sonnet:thinking"
    response = post(gateway, bundle, {"model": slug, "max_tokens": 3000, "provider": {"only": ["anthropic"]}})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == slug
    thinking = simulator.last_request("anthropic")["thinking"]
    assert thinking["type"] == "enabled" and thinking["budget_tokens"] >= 1024
    assert response.json()["choices"][0]["message"]["reasoning"]
    endpoint = endpoints_of(slug)[0]
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(expected_cost(endpoint, response.json()["usage"]))

    # A dynamic :thinking on an OpenAI-dialect model sends reasoning on; an explicit choice is kept.
    response = post(gateway, bundle, {"model": "deepseek/deepseek-r1:thinking", "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.status_code == 200 and response.json()["model"] == "deepseek/deepseek-r1"
    assert simulator.last_request("deepseek")["reasoning"] == {"enabled": True}
    response = post(
        gateway,
        bundle,
        {"model": "deepseek/deepseek-r1:thinking", "max_tokens": 5, "reasoning": {"effort": "low"}, "provider": {"sort": "price"}},
    )
    assert simulator.last_request("deepseek")["reasoning"] == {"effort": "low"}
    response = post(gateway, bundle, {"model": "deepseek/deepseek-r1", "max_tokens": 5, "provider": {"sort": "price"}})
    assert "reasoning" not in simulator.last_request("deepseek")
    # Where the endpoint does not take reasoning, it is dropped like any unsupported parameter.
    response = post(gateway, bundle, {"model": f"{LLAMA}:thinking", "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.status_code == 200 and "reasoning" not in simulator.last_request("deepinfra")
    assert_ledger_consistent(bundle.account)


def test_nitro_sorts_by_measured_throughput(gateway, simulator, seeded):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    for slug, endpoint in endpoints.items():
        for _ in range(10):
            stats_record(endpoint.id, ok=True, ttft_ms=200.0, tokens_per_second=1500.0 if slug == "together" else 40.0)
    publish_health(lambda h: all(e.id in h for e in endpoints.values()))
    bundle = make_key(credits="5")
    for i in range(5):
        response = post(gateway, bundle, {"model": f"{LLAMA}:nitro", "max_tokens": 3, "messages": [{"role": "user", "content": str(i)}]})
        assert response.status_code == 200 and response.json()["provider"] == "Together"
        assert response.json()["model"] == LLAMA
    # An explicit sort wins over the variant.
    response = post(gateway, bundle, {"model": f"{LLAMA}:nitro", "max_tokens": 3, "provider": {"sort": "price"}})
    assert response.json()["provider"] == "DeepInfra"


def test_floor_sorts_by_price_strictly(gateway, simulator, seeded):
    endpoints = endpoints_of(LLAMA)
    bundle = make_key(credits="5")
    for i in range(10):
        response = post(gateway, bundle, {"model": f"{LLAMA}:floor", "max_tokens": 2, "messages": [{"role": "user", "content": str(i)}]})
        assert response.json()["provider"] == endpoints[0].provider.name
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, fail="503")
    response = post(gateway, bundle, {"model": f"{LLAMA}:floor", "max_tokens": 2})
    assert response.status_code == 503
    assert [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]] == [e.provider.name for e in endpoints]


def test_service_tiers_take_part_only_under_nitro_and_floor(gateway, simulator, seeded):
    _, flex = make_test_model(LLAMA, provider="deepinfra", tag="deepinfra/flex", prompt=10_000_000, completion=20_000_000)
    _, priority = make_test_model(LLAMA, provider="groq", tag="groq/priority", prompt=900_000_000, completion=900_000_000)
    for endpoint in endpoints_of(LLAMA):
        for _ in range(10):
            fast = endpoint.id == priority.id
            stats_record(endpoint.id, ok=True, ttft_ms=100.0, tokens_per_second=3000.0 if fast else 50.0)
    publish_health(lambda h: priority.id in h and flex.id in h)
    bundle = make_key(credits="5")

    def served_by(model: str, **extra) -> int:
        response = post(gateway, bundle, {"model": model, "max_tokens": 3, **extra})
        assert response.status_code == 200, response.text
        record = generation(response.json()["id"])
        assert record.cost == expected_cost(Endpoint.objects.get(id=record.endpoint_id), response.json()["usage"])
        return record.endpoint_id

    regular = {e.id for e in endpoints_of(LLAMA) if e.tag in ("deepinfra", "groq")}
    assert served_by(LLAMA, provider={"sort": "price"}) in regular - {priority.id, flex.id}
    assert served_by(LLAMA, provider={"sort": "throughput"}) != priority.id
    assert served_by(f"{LLAMA}:floor") == flex.id  # billed at the flex price
    assert served_by(f"{LLAMA}:nitro") == priority.id  # billed at the priority price
    assert served_by(LLAMA, provider={"order": ["groq/priority"]}) == priority.id  # named by its full tag


def test_exacto_prefers_measured_tool_calling_success(gateway, simulator, seeded):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    for slug, endpoint in endpoints.items():
        good = {"fireworks": 10, "groq": 7}.get(slug, 2)
        for i in range(10):
            stats_record(endpoint.id, ok=True, ttft_ms=200.0, tokens_per_second=100.0, tool_calls=i < good)
    publish_health(lambda h: all(h.get(e.id) and h[e.id].tool_call_requests == 10 for e in endpoints.values()))
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": f"{LLAMA}:exacto", "max_tokens": 3})
    assert response.status_code == 200 and response.json()["provider"] == "Fireworks"
    simulator.set("fireworks", fail="503")
    response = post(gateway, bundle, {"model": f"{LLAMA}:exacto", "max_tokens": 3})
    assert response.json()["provider"] == "Groq"


def test_the_gateway_measures_tool_calling_for_exacto(gateway, simulator):
    slug = "anthropic/claude-3.5-haiku"
    anthropic = next(e for e in endpoints_of(slug) if e.provider.slug == "anthropic")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    bundle = make_key(credits="5")
    body = {"model": slug, "max_tokens": 200, "tools": tools, "provider": {"only": ["anthropic"]}}
    called = post(gateway, bundle, {**body, "messages": [{"role": "user", "content": "Look it up [sim:tool=lookup]"}]})
    assert called.status_code == 200 and called.json()["choices"][0]["message"]["tool_calls"]
    response, events = stream(gateway, bundle, {**body, "messages": [{"role": "user", "content": "Again [sim:tool=lookup]"}]})
    assert response.status_code == 200 and any(
        (e["choices"][0].get("delta") or {}).get("tool_calls") for e in events[:-1] if e.get("choices")
    )
    assert post(gateway, bundle, {**body, "messages": [{"role": "user", "content": "No tool here"}]}).status_code == 200
    assert post(gateway, bundle, {"model": slug, "max_tokens": 20, "provider": {"only": ["anthropic"]}}).status_code == 200
    health = publish_health(lambda h: anthropic.id in h and h[anthropic.id].tool_call_requests >= 3)
    assert health[anthropic.id].tool_call_requests == 3  # the request without tools is not counted
    assert health[anthropic.id].tool_call_success == pytest.approx(2 / 3, abs=1e-3)
    assert health_snapshot()[anthropic.id].tool_call_requests == 3


def test_extended_exists_only_where_the_catalog_lists_it(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": "openai/gpt-4o:extended", "max_tokens": 3})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "openai/gpt-4o:extended"
    extended = endpoints_of("openai/gpt-4o:extended")[0]
    assert simulator.last_request("openai")["model"] == extended.upstream_model_id
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(expected_cost(extended, response.json()["usage"]))
    response = post(gateway, bundle, {"model": f"{LLAMA}:extended", "max_tokens": 3})
    assert response.status_code == 400
    assert error_of(response)["metadata"]["availability"]["code"] == "model_not_found"
    response = post(gateway, bundle, {"model": f"{LLAMA}:sideways", "max_tokens": 3})
    assert response.status_code == 400


# --- :online -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_online_variant_searches_and_charges_the_search_fee(gateway, simulator, streaming):
    bundle = make_key(credits="5")
    body = {"model": f"{LLAMA}:online", "max_tokens": 5, "provider": {"sort": "price"},
            "messages": [{"role": "user", "content": "What happened at the Tour de France?"}]}
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
        annotated = [e for e in events[:-1] if e.get("choices") and "annotations" in e["choices"][0]["delta"]]
        assert len(annotated) == 1 and annotated[0]["choices"][0]["delta"]["annotations"] == []
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        usage, generation_id = response.json()["usage"], response.json()["id"]
        assert response.json()["choices"][0]["message"]["annotations"] == []  # the simulator cites nothing
    sent = simulator.last_request("deepinfra")["messages"]
    assert sent[0]["role"] == "system" and "A web search was conducted" in sent[0]["content"]
    assert "URL: https://" in sent[0]["content"] and sent[-1]["content"] == body["messages"][0]["content"]
    model_cost = expected_cost(endpoints_of(LLAMA)[0], usage)
    assert usage["cost"] == nanos_to_usd_number(model_cost + SIMULATED_PRICE)
    assert generation(generation_id).cost == model_cost + SIMULATED_PRICE
    assert_ledger_consistent(bundle.account)


# --- routers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "chosen"),
    [
        ("Why does this fail?\n```python\ndef f(x):\n    return x +\n```", "anthropic/claude-sonnet-4"),
        ("Solve for x: 3x + 4 = 19, and prove that the solution is unique.", "openai/o3-mini"),
        ("Tell me about the history of tea.", "openai/gpt-4o-mini"),
    ],
)
def test_auto_router_picks_by_classifier_and_says_which_model(gateway, simulator, prompt, chosen):
    bundle = make_key(credits="5")
    response = post(
        gateway, bundle, {"model": "openrouter/auto", "max_tokens": 5, "messages": [{"role": "user", "content": prompt}], "provider": {"sort": "price"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == chosen
    endpoint = endpoints_of(chosen)[0]
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(expected_cost(endpoint, response.json()["usage"]))
    data = httpx.get(f"{gateway.api}/generation", params={"id": response.json()["id"]}, headers=bundle.headers, timeout=30)
    assert data.status_code == 200, data.text
    assert data.json()["data"]["router"] == "openrouter/auto" and data.json()["data"]["model"] == chosen
    record = generation(response.json()["id"])
    assert record.requested_model == "openrouter/auto"
    assert_ledger_consistent(bundle.account)


def test_auto_router_falls_back_along_its_pool_and_streams(gateway, simulator):
    bundle = make_key(credits="5")
    simulator.set("anthropic", fail="503")
    simulator.set("google-vertex", fail="503")
    code = "Refactor this:\n```js\nconst add = (a, b) => a + b\n```"
    response, events = stream(gateway, bundle, {"model": "openrouter/auto", "max_tokens": 5, "messages": [{"role": "user", "content": code}]})
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert {e["model"] for e in events[:-1]} == {"openai/gpt-4.1"}  # the second of the code pool
    record = generation(response.headers["x-generation-id"])
    assert record.router == "openrouter/auto" and record.model == "openai/gpt-4.1"
    assert [a["model_permaslug"] for a in record.provider_responses][-1] == "openai/gpt-4.1"


def test_free_router_picks_a_free_model_and_counts_against_the_free_limit(gateway, simulator, frozen_clock, monkeypatch):
    bundle = make_key(credits="1")
    response = post(gateway, bundle, {"model": "openrouter/free", "max_tokens": 4})
    assert response.status_code == 200, response.text
    chosen = response.json()["model"]
    assert chosen.endswith(":free") and all(e.price_prompt == e.price_completion == 0 for e in endpoints_of(chosen))
    assert response.json()["usage"]["cost"] == 0
    record = generation(response.json()["id"])
    assert record.router == "openrouter/free" and record.cost == 0
    # Tools narrow the choice to the free model whose free endpoint takes them.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    response = post(gateway, bundle, {"model": "openrouter/free", "max_tokens": 4, "tools": tools})
    assert response.status_code == 200 and response.json()["model"] == FREE_LLAMA
    monkeypatch.setattr(ratelimits, "FREE_MODEL_PER_DAY", 3)
    response = post(gateway, bundle, {"model": "openrouter/free", "max_tokens": 4})
    assert response.status_code == 200
    response = post(gateway, bundle, {"model": "openrouter/free", "max_tokens": 4})
    assert response.status_code == 429 and "free-models-per-day" in error_of(response)["message"]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == usd_to_nanos("1")


def test_web_search_on_a_free_model_still_pays_the_search(gateway, simulator, frozen_clock):
    bundle = make_key(credits="1")
    response = post(gateway, bundle, {"model": FREE_LLAMA, "max_tokens": 4, "plugins": [{"id": "web"}]})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(SIMULATED_PRICE)
    assert generation(response.json()["id"]).cost == SIMULATED_PRICE
    assert_ledger_consistent(bundle.account)


def test_a_free_variant_the_catalog_does_not_list_is_400(gateway):
    bundle = make_key(credits="1")
    response = post(gateway, bundle, {"model": "openai/gpt-4o:free", "max_tokens": 4})
    assert response.status_code == 400
    assert error_of(response)["metadata"]["availability"]["code"] == "model_not_found"
