"""POST /api/v1/chat/completions through a live server, real HTTP to the simulator, real DB/counters."""

from __future__ import annotations

import httpx
import orjson
import pytest

from accounts.models import Account
from activity.models import Generation
from billing.money import nanos_to_usd_number, tokens_cost
from billing.selectors import ledger_drift, ledger_sum
from billing.settlement import settlement_flush
from routing.models import Endpoint
from tests.factories import make_key
from tests.openapi import validate_response, validate_schema
from tests.routing.gateway_helpers import stream as stream_chat

pytestmark = pytest.mark.django_db(transaction=True)


def multi_provider_model(min_endpoints: int = 2, dialect: str = "openai") -> tuple[str, list[Endpoint]]:
    """A paid model served by several providers of one dialect, with its endpoints cheapest first."""
    by_model: dict[str, list[Endpoint]] = {}
    rows = Endpoint.objects.filter(active=True, price_prompt__gt=0).select_related("model", "provider")
    for endpoint in rows:
        by_model.setdefault(endpoint.model.slug, []).append(endpoint)
    by_model = {
        slug: endpoints for slug, endpoints in by_model.items() if all(e.provider.dialect == dialect for e in endpoints)
    }
    for slug, endpoints in sorted(by_model.items()):
        if len(endpoints) >= min_endpoints:
            endpoints.sort(key=lambda e: (e.price_prompt + e.price_completion, e.price_request, e.tag))
            return slug, endpoints
    raise AssertionError("the catalog has no multi-provider model")


def chat(server, bundle, **body) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "Say hello in five words."}])
    body.setdefault("provider", {"sort": "price"})  # deterministic order: cheapest first
    return httpx.post(f"{server.api}/chat/completions", json=body, headers=bundle.headers, timeout=30)


def stream_events(response: httpx.Response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[6:]
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


def expected_cost(endpoint: Endpoint, usage: dict) -> int:
    return (
        tokens_cost(usage["prompt_tokens"], endpoint.price_prompt)
        + tokens_cost(usage["completion_tokens"], endpoint.price_completion)
        + endpoint.price_request
    )


def assert_ledger_consistent(account: Account) -> None:
    settlement_flush()
    account.refresh_from_db()
    assert ledger_sum(account_id=account.id) == account.balance
    assert ledger_drift() == []


def test_non_streaming_answer_is_charged_exactly(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    response = chat(gateway, bundle, model=slug, max_tokens=12)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/chat/completions", "post", 200, body)
    assert body["id"].startswith("gen-") and response.headers["x-generation-id"] == body["id"]
    assert body["model"] == slug
    assert body["provider"] == endpoints[0].provider.name
    assert body["object"] == "chat.completion"
    assert "system_fingerprint" in body
    choice = body["choices"][0]
    assert choice["message"]["content"]
    assert choice["native_finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    cost = expected_cost(endpoints[0], usage)
    assert cost > 0
    assert usage["cost"] == nanos_to_usd_number(cost)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    settlement_flush()
    generation = Generation.objects.get(id=body["id"])
    assert generation.cost == cost
    assert generation.tokens_prompt == usage["prompt_tokens"]
    assert generation.tokens_completion == usage["completion_tokens"]
    assert generation.provider_name == endpoints[0].provider.name
    assert generation.streamed is False and generation.cancelled is False
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 5 * 10**9 - cost
    assert_ledger_consistent(bundle.account)


def test_streaming_answer_has_chunks_usage_and_done(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    response, events = stream_chat(gateway, bundle, {"model": slug, "max_tokens": 8, "provider": {"sort": "price"}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    generation_id = response.headers["x-generation-id"]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {generation_id}
    for chunk in chunks:
        validate_schema("ChatStreamChunk", chunk)
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == slug
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishing and finishing[-1]["choices"][0]["native_finish_reason"] in {"stop", "length"}
    usage = usage_chunk["usage"]
    content_deltas = sum(1 for c in chunks[:-1] if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert usage["completion_tokens"] == content_deltas
    cost = expected_cost(endpoints[0], usage)
    assert usage["cost"] == nanos_to_usd_number(cost)
    settlement_flush()
    generation = Generation.objects.get(id=generation_id)
    assert generation.streamed and generation.cost == cost and generation.first_token_ms is not None
    assert_ledger_consistent(bundle.account)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["500", "429", "drop", "empty"])
def test_provider_fault_before_first_token_falls_back(gateway, simulator, fault, stream):
    slug, endpoints = multi_provider_model()
    cheapest, second = endpoints[0], endpoints[1]
    simulator.set(cheapest.provider.slug, fail=fault, drop_after_chunks=0)
    bundle = make_key(credits="5")
    if stream:
        response, events = stream_chat(gateway, bundle, {"model": slug, "max_tokens": 6, "provider": {"sort": "price"}})
        assert response.status_code == 200
        generation_id = response.headers["x-generation-id"]
        assert events[-1] == "[DONE]"
        assert all(e.get("provider") == second.provider.name for e in events[:-1])
        usage = events[-2]["usage"]
    else:
        response = chat(gateway, bundle, model=slug, max_tokens=6)
        assert response.status_code == 200, response.text
        generation_id = response.json()["id"]
        assert response.json()["provider"] == second.provider.name
        usage = response.json()["usage"]
    settlement_flush()
    generation = Generation.objects.get(id=generation_id)
    statuses = [attempt["status"] for attempt in generation.provider_responses]
    assert statuses[-1] == 200 and len(statuses) == 2
    assert generation.cost == expected_cost(second, usage)  # the failed attempt is free
    assert_ledger_consistent(bundle.account)


def test_all_providers_rate_limited_gives_429_with_smallest_retry_after(gateway, simulator):
    slug, endpoints = multi_provider_model()
    for index, endpoint in enumerate(endpoints):
        simulator.set(endpoint.provider.slug, fail="429", retry_after=3 + index)
    bundle = make_key(credits="5")
    response = chat(gateway, bundle, model=slug, max_tokens=5)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    error = response.json()["error"]
    assert error["code"] == 429
    assert len(error["metadata"]["previous_errors"]) == len(endpoints)
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


def test_all_providers_down_gives_503_and_no_charge(gateway, simulator):
    slug, endpoints = multi_provider_model()
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, fail="503")
    bundle = make_key(credits="5")
    response = chat(gateway, bundle, model=slug, max_tokens=5)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == 503
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


def test_mid_stream_failure_ends_with_error_chunk_and_bills_delivered_tokens(gateway, simulator):
    slug, endpoints = multi_provider_model()
    simulator.set(endpoints[0].provider.slug, fail="drop", drop_after_chunks=3)
    bundle = make_key(credits="5")
    response, events = stream_chat(gateway, bundle, {"model": slug, "max_tokens": 20, "provider": {"sort": "price"}})
    assert response.status_code == 200
    generation_id = response.headers["x-generation-id"]
    error_chunks = [e for e in events[:-1] if "error" in e]
    assert len(error_chunks) == 1
    assert error_chunks[0]["choices"][0]["finish_reason"] == "error"
    delivered = sum(
        1 for e in events[:-1] if e.get("choices") and (e["choices"][0].get("delta") or {}).get("content")
    )
    assert delivered == 3
    settlement_flush()
    generation = Generation.objects.get(id=generation_id)
    assert generation.finish_reason == "error"
    assert generation.tokens_completion == 3
    assert generation.cost == expected_cost(
        endpoints[0], {"prompt_tokens": generation.tokens_prompt, "completion_tokens": 3}
    )
    assert_ledger_consistent(bundle.account)


def test_client_disconnect_cancels_upstream_and_bills_only_generated_tokens(gateway, simulator):
    slug, endpoints = multi_provider_model()
    provider = endpoints[0].provider.slug
    simulator.set(provider, tokens_per_second=20, completion_tokens=200)
    bundle = make_key(credits="5")
    received = 0
    with httpx.stream(
        "POST",
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": [{"role": "user", "content": "hi"}], "stream": True, "provider": {"sort": "price"}},
        headers=bundle.headers,
        timeout=30,
    ) as response:
        generation_id = response.headers["x-generation-id"]
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received += 1
                if received == 3:
                    break
    simulator.wait_for_stats(provider, lambda s: s["cancelled"] == 1, timeout=10)
    settlement_flush()
    generation = Generation.objects.get(id=generation_id)
    assert generation.cancelled is True
    assert 3 <= generation.tokens_completion < 200
    assert generation.cost == expected_cost(
        endpoints[0], {"prompt_tokens": generation.tokens_prompt, "completion_tokens": generation.tokens_completion}
    )
    assert_ledger_consistent(bundle.account)
