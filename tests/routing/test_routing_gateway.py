"""Routing through the live gateway: price-weighted load balancing, health, every ``provider`` field,
``models`` fallbacks and the legacy ``route``, stickiness, modality filters, the errors of filters that
leave nothing, and live endpoint statistics. Real HTTP to the simulator, real DB and counters."""

from __future__ import annotations

import httpx
import pytest

from billing.money import nanos_to_usd_number
from billing.settlement import settlement_flush
from routing.models import Endpoint
from routing.stats import stats_flush, stats_record
from tests.factories import make_key
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

# Five OpenAI-dialect providers, all different prices: deepinfra < groq < cerebras < together < fireworks.
LLAMA = "meta-llama/llama-3.1-8b-instruct"
PRICE = {"sort": "price"}


def answered_by(simulator, providers) -> dict[str, int]:
    """Completed requests per provider slug, as the simulator counted them."""
    return {slug: simulator.stats(slug)["completed"] for slug in providers}


def availability(response: httpx.Response) -> dict:
    return error_of(response)["metadata"]["availability"]


# --- price-weighted load balancing and health ------------------------------------------------------


def test_default_routing_spreads_requests_by_inverse_square_of_price(gateway, simulator, seeded):
    endpoints = endpoints_of(LLAMA)
    slugs = [e.provider.slug for e in endpoints]
    bundle = make_key(credits="5")
    with httpx.Client(headers=bundle.headers, timeout=30) as client:
        for i in range(200):
            response = client.post(
                f"{gateway.api}/chat/completions",
                json={"model": LLAMA, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 2},
            )
            assert response.status_code == 200, response.text
    counts = answered_by(simulator, slugs)
    assert sum(counts.values()) == 200
    assert sum(simulator.stats(s)["requests"] for s in slugs) == 200  # one attempt each: no fallback needed
    weights = [1 / float(e.price_prompt + e.price_completion) ** 2 for e in endpoints]
    shares = [w / sum(weights) for w in weights]
    cheapest = slugs[0]
    assert counts[cheapest] == max(counts.values())
    assert abs(counts[cheapest] / 200 - shares[0]) < 0.12, (counts, shares)
    assert counts[slugs[1]] > counts[slugs[-1]]  # the second cheapest beats the dearest
    assert sum(1 for c in counts.values() if c) >= 3  # spread, not pinned
    assert_ledger_consistent(bundle.account)


def test_a_recently_failing_provider_is_not_drawn_and_is_tried_last(gateway, simulator, seeded):
    endpoints = endpoints_of(LLAMA)
    cheapest = endpoints[0]
    bundle = make_key(credits="5")
    simulator.set(cheapest.provider.slug, fail="503")
    for _ in range(3):  # cheapest first, fails, the next one answers
        assert post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "provider": PRICE}).status_code == 200
    publish_health(lambda h: cheapest.id in h and h[cheapest.id].recently_failing)
    simulator.set(cheapest.provider.slug)  # healthy again, but its failures are less than 30 s old
    before = simulator.stats(cheapest.provider.slug)["requests"]
    for i in range(20):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "messages": [{"role": "user", "content": f"q{i}"}]})
        assert response.status_code == 200
        assert response.json()["provider"] != cheapest.provider.name
    assert simulator.stats(cheapest.provider.slug)["requests"] == before

    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, fail="503")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 2})
    assert response.status_code == 503
    tried = [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]]
    assert len(tried) == len(endpoints) and tried[-1] == cheapest.provider.name
    # After the drawn one, the other stable providers follow cheapest first.
    rest = [e.provider.name for e in endpoints[1:] if e.provider.name != tried[0]]
    assert tried[1:-1] == rest
    assert_ledger_consistent(bundle.account)


def test_an_attempt_skipped_for_the_accounts_credits_does_not_count_against_the_endpoint(gateway, simulator):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    simulator.set("deepinfra", fail="503")
    bundle = make_key(credits="0.001")  # covers DeepInfra's worst case, not Fireworks' (5x the price)
    body = {"model": LLAMA, "max_tokens": 10_000, "provider": {"order": ["deepinfra", "fireworks"], "allow_fallbacks": False}}
    for _ in range(3):
        response = post(gateway, bundle, body)
        assert response.status_code in (402, 503), response.text
        tried = [(e["provider"], e["status"]) for e in error_of(response)["metadata"]["previous_errors"]]
        assert tried == [("DeepInfra", 503), ("Fireworks", 402)]
        settlement_flush()  # the hold is released when the generation is written
    assert simulator.stats("fireworks")["requests"] == 0
    health = publish_health(lambda h: endpoints["deepinfra"].id in h)
    assert health[endpoints["deepinfra"].id].recently_failing  # its own failures count
    assert endpoints["fireworks"].id not in health  # never contacted: nothing measured
    assert_ledger_consistent(bundle.account)


# --- provider preferences --------------------------------------------------------------------------


def test_provider_order_is_tried_in_order_then_the_rest(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"order": ["together", "groq"]}})
    assert response.status_code == 200 and response.json()["provider"] == "Together"

    simulator.set("together", fail="502")
    simulator.set("groq", fail="500")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"order": ["together", "groq"]}})
    assert response.status_code == 200, response.text
    record = generation(response.json()["id"])
    names = [a["provider_name"] for a in record.provider_responses]
    assert names[:2] == ["Together", "Groq"] and [a["status"] for a in record.provider_responses][:2] == [502, 500]
    assert names[2] == "DeepInfra" == response.json()["provider"]  # then the others, cheapest first
    assert_ledger_consistent(bundle.account)


def test_allow_fallbacks_false_returns_the_upstream_error(gateway, simulator):
    bundle = make_key(credits="5")
    simulator.set("groq", fail="429", retry_after=9)
    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"order": ["groq"], "allow_fallbacks": False}}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "9"
    error = error_of(response)
    assert error["metadata"]["availability"]["code"] == "capacity_exhausted"
    assert [e["provider"] for e in error["metadata"]["previous_errors"]] == ["Groq"]
    assert sum(simulator.stats(e.provider.slug)["requests"] for e in endpoints_of(LLAMA)) == 1

    simulator.set("groq", fail="500")
    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"order": ["groq"], "allow_fallbacks": False}}
    )
    assert response.status_code in (500, 502, 503)
    assert error_of(response)["metadata"]["provider_name"] == "Groq"
    assert sum(simulator.stats(e.provider.slug)["requests"] for e in endpoints_of(LLAMA)) == 2

    # Without order, allow_fallbacks=false keeps only the first choice.
    simulator.set("deepinfra", fail="503")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "allow_fallbacks": False}})
    assert response.status_code == 503
    assert [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]] == ["DeepInfra"]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


def test_unsupported_parameters_are_dropped_unless_required(gateway, simulator):
    supporting = [e.provider.slug for e in endpoints_of(LLAMA) if "logprobs" in e.supported_parameters]
    assert "deepinfra" not in supporting and supporting[0] == "groq"
    bundle = make_key(credits="5")

    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "logprobs": True, "temperature": 0.5, "provider": PRICE})
    assert response.status_code == 200 and response.json()["provider"] == "DeepInfra"
    sent = simulator.last_request("deepinfra")
    assert "logprobs" not in sent and sent["temperature"] == 0.5  # only the unsupported one is dropped

    response = post(
        gateway,
        bundle,
        {"model": LLAMA, "max_tokens": 3, "logprobs": True, "provider": {**PRICE, "require_parameters": True}},
    )
    assert response.status_code == 200 and response.json()["provider"] == "Groq"
    assert simulator.last_request("groq")["logprobs"] is True
    assert simulator.stats("deepinfra")["requests"] == 1

    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "top_a": 0.5, "provider": {"require_parameters": True}}
    )
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "constraint_filtered" and data["excluded_by"] == ["require_parameters"]
    assert data["constraint"]["field"] == "require_parameters" and "top_a" in data["constraint"]["detail"]
    assert_ledger_consistent(bundle.account)


def test_data_collection_deny_and_zdr_filter_providers_or_answer_privacy_restricted(gateway, simulator):
    bundle = make_key(credits="5")
    # DeepSeek trains on data: with deny, its endpoint is skipped even when named first.
    slug = "deepseek/deepseek-chat-v3-0324"
    response = post(gateway, bundle, {"model": slug, "max_tokens": 3, "provider": {"order": ["deepseek"], "data_collection": "deny"}})
    assert response.status_code == 200 and response.json()["provider"] != "DeepSeek"
    assert simulator.stats("deepseek")["requests"] == 0
    response = post(gateway, bundle, {"model": slug, "max_tokens": 3, "provider": {"order": ["deepseek"]}})
    assert response.status_code == 200 and response.json()["provider"] == "DeepSeek"

    # xAI retains prompts; OpenAI is not zero-data-retention: nothing qualifies.
    response = post(gateway, bundle, {"model": "x-ai/grok-3-mini", "max_tokens": 3, "provider": {"data_collection": "deny"}})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "privacy_restricted" and data["excluded_by"] == ["data_policy:training"]
    assert data["requested_models"] == ["x-ai/grok-3-mini"]
    response = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3, "provider": {"zdr": True}})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "privacy_restricted" and data["excluded_by"] == ["data_policy:zdr"]
    # A zero-data-retention provider passes.
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "zdr": True}})
    assert response.status_code == 200 and response.json()["provider"] == "DeepInfra"
    assert simulator.stats("openai")["requests"] == simulator.stats("x-ai")["requests"] == 0


def test_only_and_ignore(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "only": ["fireworks"]}})
    assert response.status_code == 200 and response.json()["provider"] == "Fireworks"
    simulator.set("fireworks", fail="503")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "only": ["fireworks"]}})
    assert response.status_code == 503  # nothing outside `only` is tried
    assert [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]] == ["Fireworks"]

    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "ignore": ["deepinfra", "Groq"]}})
    assert response.status_code == 200 and response.json()["provider"] == "Cerebras"
    assert simulator.stats("deepinfra")["requests"] == simulator.stats("groq")["requests"] == 0

    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"only": ["openai"]}})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "constraint_filtered" and data["constraint"]["field"] == "allowed_providers"
    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"ignore": [e.provider.slug for e in endpoints_of(LLAMA)]}}
    )
    assert response.status_code == 404 and availability(response)["excluded_by"] == ["allowed_providers"]


def test_quantizations(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "quantizations": ["fp8"]}})
    assert response.status_code == 200 and response.json()["provider"] == "Together"
    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "quantizations": ["fp16", "unknown"]}}
    )
    assert response.status_code == 200 and response.json()["provider"] == "Groq"  # groq's is unknown
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"quantizations": ["int4"]}})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "constraint_filtered" and data["constraint"]["field"] == "quantization"
    assert simulator.stats("deepinfra")["requests"] == 0


def test_max_price_is_a_hard_filter_in_usd_per_million_tokens(gateway, simulator):
    endpoints = endpoints_of(LLAMA)
    bundle = make_key(credits="5")
    # groq is $0.05/$0.08; deepinfra ($0.03/$0.05) fails, and nothing dearer than groq may be tried.
    simulator.set("deepinfra", fail="503")
    simulator.set("groq", fail="503")
    response = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "max_price": {"prompt": 0.05, "completion": 0.08}}}
    )
    assert response.status_code == 503
    assert [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]] == ["DeepInfra", "Groq"]
    assert all(simulator.stats(e.provider.slug)["requests"] == 0 for e in endpoints[2:])

    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"max_price": {"prompt": 0.01}}})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "constraint_filtered" and data["excluded_by"] == ["max_price"]
    assert data["constraint"]["field"] == "max_price"
    assert_ledger_consistent(bundle.account)


def test_sort_by_throughput_and_latency_uses_live_stats_and_disables_load_balancing(gateway, simulator, seeded):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    for slug, endpoint in endpoints.items():
        for _ in range(10):
            stats_record(
                endpoint.id,
                ok=True,
                ttft_ms=80.0 if slug == "cerebras" else 900.0,
                tokens_per_second=2000.0 if slug == "fireworks" else 60.0,
            )
    publish_health(lambda h: all(e.id in h for e in endpoints.values()))
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"sort": "throughput"}})
    assert response.status_code == 200 and response.json()["provider"] == "Fireworks"
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"sort": {"by": "latency"}}})
    assert response.status_code == 200 and response.json()["provider"] == "Cerebras"
    for i in range(10):  # a sort is strict: no draw
        response = post(
            gateway, bundle, {"model": LLAMA, "max_tokens": 2, "provider": PRICE, "messages": [{"role": "user", "content": str(i)}]}
        )
        assert response.json()["provider"] == "DeepInfra"
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"sort": "speed"}})
    assert response.status_code == 400


def test_sort_partition_none_and_the_legacy_route_sort_order_all_models_together(gateway, simulator):
    bundle = make_key(credits="5")

    def body(n: int) -> dict:  # a new conversation each time: gpt-4o's cheaper cache reads make them sticky
        return {"model": "openai/gpt-4o", "models": ["openai/gpt-4o-mini"], "max_tokens": 3,
                "messages": [{"role": "user", "content": f"conversation {n}"}]}

    response = post(gateway, bundle, {**body(1), "provider": {"sort": "price"}})
    assert response.status_code == 200 and response.json()["model"] == "openai/gpt-4o"  # partition by model
    response = post(gateway, bundle, {**body(2), "provider": {"sort": {"by": "price", "partition": "none"}}})
    assert response.status_code == 200 and response.json()["model"] == "openai/gpt-4o-mini"
    response = post(gateway, bundle, {**body(3), "route": "sort", "provider": {"sort": "price"}})
    assert response.status_code == 200 and response.json()["model"] == "openai/gpt-4o-mini"
    mini = endpoints_of("openai/gpt-4o-mini")[0]
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(expected_cost(mini, response.json()["usage"]))


def test_preferred_min_throughput_and_max_latency_are_soft(gateway, simulator):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    for slug, endpoint in endpoints.items():
        slow = slug == "deepinfra"
        for _ in range(10):
            stats_record(endpoint.id, ok=True, ttft_ms=4000.0 if slow else 100.0, tokens_per_second=5.0 if slow else 300.0)
    publish_health(lambda h: all(e.id in h for e in endpoints.values()))
    bundle = make_key(credits="5")
    for preference in ({"preferred_min_throughput": 100}, {"preferred_max_latency": {"p90": 1}}):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, **preference}})
        assert response.status_code == 200 and response.json()["provider"] == "Groq", preference
        # Soft: the slow one is still a fallback, last.
        for slug in endpoints:
            simulator.set(slug, fail="503")
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, **preference}})
        tried = [e["provider"] for e in error_of(response)["metadata"]["previous_errors"]]
        assert tried[0] == "Groq" and tried[-1] == "DeepInfra" and len(tried) == len(endpoints)
        for slug in endpoints:
            simulator.set(slug)
    # When every endpoint misses, nothing changes.
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {**PRICE, "preferred_min_throughput": 10_000}})
    assert response.status_code == 200 and response.json()["provider"] == "DeepInfra"


def test_soft_requirements_tools_response_format_and_max_tokens(gateway, simulator):
    bundle = make_key(credits="5")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    # DeepSeek's own R1 endpoint (the cheapest) has no tool support.
    r1 = "deepseek/deepseek-r1"
    response = post(gateway, bundle, {"model": r1, "max_tokens": 5, "provider": PRICE})
    assert response.json()["provider"] == "DeepSeek"
    response = post(gateway, bundle, {"model": r1, "max_tokens": 5, "tools": tools, "provider": PRICE})
    assert response.status_code == 200 and response.json()["provider"] == "DeepInfra"
    assert simulator.last_request("deepinfra")["tools"] == tools
    # Novita serves Maverick without response_format: named first, it is passed over.
    maverick = "meta-llama/llama-4-maverick"
    response = post(
        gateway,
        bundle,
        {"model": maverick, "max_tokens": 5, "response_format": {"type": "json_object"}, "provider": {"order": ["novita", "groq"]}},
    )
    assert response.status_code == 200 and response.json()["provider"] == "Groq"
    # No endpoint of WizardLM takes tools: soft, so it is routed anyway and the parameter dropped.
    response = post(gateway, bundle, {"model": "microsoft/wizardlm-2-8x22b", "max_tokens": 5, "tools": tools, "provider": PRICE})
    assert response.status_code == 200 and response.json()["provider"] == "DeepInfra"
    assert "tools" not in simulator.last_request("deepinfra")
    # max_tokens beyond an endpoint's output limit goes to one that can produce it.
    oss = "openai/gpt-oss-120b"
    cheapest = endpoints_of(oss)[0]
    assert cheapest.provider.slug == "deepinfra" and cheapest.max_completion_tokens == 16384
    response = post(gateway, bundle, {"model": oss, "max_tokens": 20_000, "provider": PRICE})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] != "DeepInfra"
    response = post(gateway, bundle, {"model": oss, "max_tokens": 200, "provider": PRICE})
    assert response.json()["provider"] == "DeepInfra"
    assert_ledger_consistent(bundle.account)


# --- model fallbacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("legacy_route", [False, True])
def test_models_fallback_is_billed_at_the_answering_model(gateway, simulator, streaming, legacy_route):
    primary, fallback = "openai/gpt-4o", "mistralai/mistral-large-2411"
    simulator.set("openai", fail="503")
    bundle = make_key(credits="5")
    body = {"model": primary, "models": [fallback], "max_tokens": 6}
    if legacy_route:
        body["route"] = "fallback"
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        assert {e["model"] for e in events[:-1]} == {fallback}
        generation_id, usage = response.headers["x-generation-id"], events[-2]["usage"]
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == fallback and response.json()["provider"] == "Mistral"
        generation_id, usage = response.json()["id"], response.json()["usage"]
    mistral = endpoints_of(fallback)[0]
    cost = expected_cost(mistral, usage)
    assert usage["cost"] == nanos_to_usd_number(cost)
    record = generation(generation_id)
    assert record.model == fallback and record.requested_model == primary and record.cost == cost
    assert [(a["model_permaslug"], a["status"]) for a in record.provider_responses] == [(primary, 503), (fallback, 200)]
    assert_ledger_consistent(bundle.account)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_request_refused_upstream_falls_back_to_the_next_model_only(gateway, simulator, streaming):
    # Anthropic refuses an empty message (400): Claude's other provider would too, so it is not tried;
    # a `models` fallback is ("any error can trigger the fallback").
    bundle = make_key(credits="5")
    claude = "anthropic/claude-3.5-haiku"
    body = {"model": claude, "max_tokens": 4, "messages": [{"role": "user", "content": ""}], "provider": {"order": ["anthropic"]}}
    response = stream(gateway, bundle, body)[0] if streaming else post(gateway, bundle, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["metadata"]["provider_name"] == "Anthropic"
    assert [e["status"] for e in error["metadata"]["previous_errors"]] == [400]
    assert simulator.stats("google-vertex")["requests"] == 0

    body["models"] = ["openai/gpt-4o-mini"]
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        assert {e["model"] for e in events[:-1]} == {"openai/gpt-4o-mini"}
        generation_id = response.headers["x-generation-id"]
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "openai/gpt-4o-mini"
        generation_id = response.json()["id"]
    record = generation(generation_id)
    assert [(a["model_permaslug"], a["status"]) for a in record.provider_responses] == [(claude, 400), ("openai/gpt-4o-mini", 200)]
    assert simulator.stats("google-vertex")["requests"] == 0
    assert_ledger_consistent(bundle.account)


def test_models_alone_names_the_primary_and_unknown_ids_are_400(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"models": ["openai/gpt-4o-mini", "openai/gpt-4o"], "max_tokens": 3})
    assert response.status_code == 200 and response.json()["model"] == "openai/gpt-4o-mini"
    response = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "models": ["nobody/nothing"], "max_tokens": 3})
    assert response.status_code == 400
    error = error_of(response)
    assert "nobody/nothing" in error["message"] and error["metadata"]["availability"]["code"] == "model_not_found"
    response = post(gateway, bundle, {"model": LLAMA, "route": "sideways", "max_tokens": 3})
    assert response.status_code == 400


def test_filters_apply_per_model_and_a_fallback_model_can_pass_them(gateway, simulator):
    bundle = make_key(credits="5")
    # gpt-4o (OpenAI) is not ZDR; Llama has ZDR providers: the fallback serves.
    response = post(gateway, bundle, {"model": "openai/gpt-4o", "models": [LLAMA], "max_tokens": 3, "provider": {**PRICE, "zdr": True}})
    assert response.status_code == 200 and response.json()["model"] == LLAMA
    assert simulator.stats("openai")["requests"] == 0


def test_a_model_without_active_endpoints_is_404_no_endpoints(gateway):
    Endpoint.objects.filter(model__slug="cohere/command-a").update(active=False)
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": "cohere/command-a", "max_tokens": 3})
    assert response.status_code == 404
    assert availability(response)["code"] == "no_endpoints"


# --- sticky routing --------------------------------------------------------------------------------


def _provider_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["provider"]


def test_session_id_keeps_one_provider_where_load_balancing_would_spread(gateway, simulator, seeded):
    bundle = make_key(credits="5")
    # Llama's endpoints have no cache pricing: only a session id makes requests sticky.
    first = post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "session_id": "chat-1", "provider": {"ignore": ["deepinfra"]}})
    pinned = _provider_of(first)
    assert pinned != "DeepInfra"
    seen = {
        _provider_of(post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "session_id": "chat-1", "messages": [{"role": "user", "content": f"turn {i}"}]}))
        for i in range(15)
    }
    assert seen == {pinned}
    # The x-session-id header does the same.
    first = post(
        gateway, bundle, {"model": LLAMA, "max_tokens": 2, "provider": {"only": ["together"]}}, headers={"x-session-id": "chat-2"}
    )
    assert _provider_of(first) == "Together"
    seen = {
        _provider_of(post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "messages": [{"role": "user", "content": f"t{i}"}]}, headers={"x-session-id": "chat-2"}))
        for i in range(10)
    }
    assert seen == {"Together"}
    # The same conversation without a session id is not sticky here (no cheaper cache reads): it spreads.
    spread = {
        _provider_of(post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "messages": [{"role": "user", "content": "same"}]}))
        for _ in range(30)
    }
    assert len(spread) >= 2
    # Another account's session of the same name is its own.
    other = make_key(credits="5")
    response = post(gateway, other, {"model": LLAMA, "max_tokens": 2, "session_id": "chat-1", "provider": {"only": ["cerebras"]}})
    assert _provider_of(response) == "Cerebras"
    assert _provider_of(post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "session_id": "chat-1"})) == pinned
    # provider.order wins over stickiness.
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "session_id": "chat-1", "provider": {"order": ["fireworks"]}})
    assert _provider_of(response) == "Fireworks"


def test_a_conversation_sticks_where_cache_reads_are_cheaper(gateway, simulator, seeded):
    slug = "google/gemini-2.5-flash"  # two Google providers, same price, cache reads at a quarter
    endpoints = endpoints_of(slug)
    assert len(endpoints) == 2 and all(e.price_cache_read < e.price_prompt for e in endpoints)
    bundle = make_key(credits="5")
    conversation = [{"role": "system", "content": "You are a cartographer."}, {"role": "user", "content": "Map the coast."}]
    picks = set()
    for i in range(12):
        messages = [*conversation, {"role": "assistant", "content": "ok"}, {"role": "user", "content": f"more {i}"}]
        picks.add(_provider_of(post(gateway, bundle, {"model": slug, "max_tokens": 2, "messages": messages})))
    assert len(picks) == 1
    # Different conversations are drawn independently, so both providers get some.
    drawn = {
        _provider_of(post(gateway, bundle, {"model": slug, "max_tokens": 2, "messages": [{"role": "user", "content": f"topic {i}"}]}))
        for i in range(20)
    }
    assert drawn == {e.provider.name for e in endpoints}


def test_sticky_entries_live_ten_idle_minutes(gateway, simulator):
    import asyncio

    from openrouter_site import redis_clients
    from routing import sticky

    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 2, "session_id": "ttl", "provider": {"only": ["groq"]}})
    assert _provider_of(response) == "Groq"
    key = sticky.conversation_key(account_id=bundle.account.id, model=LLAMA, body={}, session_id="ttl")
    groq = next(e for e in endpoints_of(LLAMA) if e.provider.slug == "groq")
    assert asyncio.run(sticky.sticky_get(key)) == groq.id
    if redis_clients.redis_enabled():
        remaining = redis_clients.sync_client().ttl(key)
    else:
        import time

        remaining = sticky._local[key][0] - time.monotonic()
    assert 590 <= remaining <= 600


# --- modalities --------------------------------------------------------------------------------------


def test_image_parts_go_only_to_endpoints_that_take_images(gateway, simulator):
    slug = "meta-llama/llama-4-maverick"
    Endpoint.objects.filter(model__slug=slug, provider__slug="deepinfra").update(input_modalities=["text"])
    bundle = make_key(credits="5")
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    response = post(gateway, bundle, {"model": slug, "max_tokens": 3, "provider": PRICE})
    assert _provider_of(response) == "DeepInfra"
    second = endpoints_of(slug)[1].provider
    response = post(gateway, bundle, {"model": slug, "messages": image, "max_tokens": 3, "provider": PRICE})
    assert _provider_of(response) == second.name
    parts = simulator.last_request(second.slug)["messages"][0]["content"]
    assert any(p["type"] == "image_url" for p in parts)
    assert simulator.stats("deepinfra")["requests"] == 1

    response = post(gateway, bundle, {"model": LLAMA, "messages": image, "max_tokens": 3})
    assert response.status_code == 404
    data = availability(response)
    assert data["code"] == "constraint_filtered" and data["constraint"]["field"] == "input_modalities"


# --- live endpoint statistics ---------------------------------------------------------------------------


def test_endpoint_stats_after_traffic_show_on_the_endpoints_page(gateway, simulator):
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    simulator.set("deepinfra", fail="503", fail_count=1)
    bundle = make_key(credits="5")
    for i in range(4):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 4, "provider": PRICE, "messages": [{"role": "user", "content": f"n{i}"}]})
        assert response.status_code == 200
    stats_flush()
    page = httpx.get(f"{gateway.api}/models/{LLAMA}/endpoints", timeout=30)
    assert page.status_code == 200
    rows = {row["tag"]: row for row in page.json()["data"]["endpoints"]}
    deepinfra, groq = rows["deepinfra"], rows["groq"]
    assert deepinfra["uptime_last_5m"] == deepinfra["uptime_last_30m"] == deepinfra["uptime_last_1d"] == 75.0
    assert groq["uptime_last_5m"] == 100.0
    for row in (deepinfra, groq):
        assert set(row["latency_last_30m"]) == set(row["throughput_last_30m"]) == {"p50", "p75", "p90", "p99"}
        assert row["latency_last_30m"]["p50"] <= row["latency_last_30m"]["p99"]
        assert row["throughput_last_30m"]["p50"] > 0
    for tag in ("cerebras", "together", "fireworks"):
        assert rows[tag]["uptime_last_5m"] is None and rows[tag]["latency_last_30m"] is None
    assert endpoints["deepinfra"].id  # the rows are the catalog's


def test_a_small_test_model_is_routable(gateway, simulator):
    """The helper that adds models works (used by the plugin tests): sanity check of the fixture path."""
    make_test_model("test/tiny", context_length=4096)
    bundle = make_key(credits="1")
    response = post(gateway, bundle, {"model": "test/tiny", "max_tokens": 3})
    assert response.status_code == 200 and response.json()["model"] == "test/tiny"


def test_sorting_uses_latency_measured_from_real_traffic(gateway, simulator):
    simulator.set("deepinfra", latency_ms=400)
    bundle = make_key(credits="5")
    for provider in ("deepinfra", "groq", "deepinfra", "groq"):
        assert post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"only": [provider]}}).status_code == 200
    ids = {e.provider.slug: e.id for e in endpoints_of(LLAMA)}
    health = publish_health(
        lambda h: all(h.get(ids[s]) and h[ids[s]].p50_latency_ms is not None for s in ("deepinfra", "groq"))
    )
    assert health[ids["deepinfra"]].p50_latency_ms > health[ids["groq"]].p50_latency_ms
    only = ["deepinfra", "groq"]
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"only": only, "sort": "latency"}})
    assert response.json()["provider"] == "Groq"
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"only": only, "sort": "price"}})
    assert response.json()["provider"] == "DeepInfra"
