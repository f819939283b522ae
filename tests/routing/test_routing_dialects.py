"""Anthropic Messages and Gemini generateContent providers through the live gateway: the client speaks
OpenAI, the simulator receives its own dialect, and the answer is charged exactly."""

from __future__ import annotations

import pytest

from billing.money import nanos_to_usd_number
from tests.factories import make_key
from tests.openapi import validate_response, validate_schema
from tests.routing.gateway_helpers import endpoints_of, generation, post, stream, streamed_text
from tests.routing.test_chat_completions import assert_ledger_consistent, expected_cost

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "anthropic/claude-3.5-haiku"  # Anthropic (anthropic dialect) and Google Vertex (gemini dialect)
GEMINI = "google/gemini-2.0-flash-001"  # Google AI Studio (cheaper) and Google Vertex, both gemini dialect
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers."},
]


def _endpoint(slug: str, provider: str):
    return next(e for e in endpoints_of(slug) if e.provider.slug == provider)


@pytest.mark.parametrize(
    ("slug", "provider", "dialect_field"),
    [(CLAUDE, "anthropic", "system"), (GEMINI, "google-ai-studio", "systemInstruction")],
)
def test_non_streaming_answer_through_another_dialect_is_charged_exactly(gateway, simulator, slug, provider, dialect_field):
    endpoint = _endpoint(slug, provider)
    bundle = make_key(credits="5")
    response = post(
        gateway, bundle, {"model": slug, "messages": CONVERSATION, "max_tokens": 16, "provider": {"order": [provider]}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/chat/completions", "post", 200, body)
    assert body["model"] == slug and body["provider"] == endpoint.provider.name
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    assert choice["native_finish_reason"]  # the provider's own word (end_turn, STOP, ...)

    upstream = simulator.last_request(provider)
    assert dialect_field in upstream  # the system prompt went in the provider's own field
    assert "messages" not in upstream or all(m["role"] != "system" for m in upstream["messages"])
    if provider == "anthropic":
        assert upstream["max_tokens"] == 16 and simulator.last_headers(provider)["x-api-key"]
    else:
        assert upstream["contents"][0]["role"] == "user"
        assert upstream["generationConfig"]["maxOutputTokens"] == 16

    usage = body["usage"]
    cost = expected_cost(endpoint, usage)
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost"] == nanos_to_usd_number(cost)
    record = generation(body["id"])
    assert record.cost == cost and record.provider_name == endpoint.provider.name
    assert record.tokens_prompt == usage["prompt_tokens"] and record.tokens_completion == usage["completion_tokens"]
    assert [a["status"] for a in record.provider_responses] == [200]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9 - cost


@pytest.mark.parametrize(("slug", "provider"), [(CLAUDE, "anthropic"), (GEMINI, "google-ai-studio")])
def test_streaming_answer_through_another_dialect_is_charged_exactly(gateway, simulator, slug, provider):
    endpoint = _endpoint(slug, provider)
    bundle = make_key(credits="5")
    response, events = stream(
        gateway, bundle, {"model": slug, "messages": CONVERSATION, "max_tokens": 12, "provider": {"order": [provider]}}
    )
    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        validate_schema("ChatStreamChunk", chunk)
        assert chunk["model"] == slug and chunk["provider"] == endpoint.provider.name
        assert chunk["id"] == response.headers["x-generation-id"]
    assert "error" not in str(chunks)
    text = streamed_text(chunks)
    assert text
    upstream = simulator.last_request(provider)
    if provider == "anthropic":
        assert upstream["stream"] is True
    else:
        assert "contents" in upstream
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishing and finishing[-1]["choices"][0]["finish_reason"] in {"stop", "length"}
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    content_deltas = sum(1 for c in chunks[:-1] if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert usage["completion_tokens"] == content_deltas
    cost = expected_cost(endpoint, usage)
    assert usage["cost"] == nanos_to_usd_number(cost) and cost > 0
    record = generation(response.headers["x-generation-id"])
    assert record.streamed and record.cost == cost and record.tokens_completion == usage["completion_tokens"]
    assert_ledger_consistent(bundle.account)


@pytest.mark.parametrize("streaming", [False, True])
def test_anthropic_rate_limit_falls_back_to_the_gemini_dialect_provider(gateway, simulator, streaming):
    anthropic, vertex = _endpoint(CLAUDE, "anthropic"), _endpoint(CLAUDE, "google-vertex")
    simulator.set("anthropic", fail="429", retry_after=7)
    bundle = make_key(credits="5")
    body = {"model": CLAUDE, "max_tokens": 8, "provider": {"order": ["anthropic", "google-vertex"]}}
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        assert {e["provider"] for e in events[:-1]} == {"Google"}
        generation_id, usage = response.headers["x-generation-id"], events[-2]["usage"]
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        assert response.json()["provider"] == "Google"
        generation_id, usage = response.json()["id"], response.json()["usage"]
    assert simulator.stats("anthropic")["requests"] == 1
    assert "contents" in simulator.last_request("google-vertex")  # translated for Gemini
    record = generation(generation_id)
    assert [(a["provider_name"], a["status"]) for a in record.provider_responses] == [("Anthropic", 429), ("Google", 200)]
    assert record.cost == expected_cost(vertex, usage) and anthropic.price_prompt == vertex.price_prompt
    assert_ledger_consistent(bundle.account)


@pytest.mark.parametrize(("slug", "provider"), [(CLAUDE, "anthropic"), (GEMINI, "google-ai-studio")])
def test_mid_stream_drop_in_another_dialect_ends_with_an_error_chunk_and_bills_what_was_delivered(
    gateway, simulator, slug, provider
):
    endpoint = _endpoint(slug, provider)
    simulator.set(provider, fail="drop", drop_after_chunks=4, completion_tokens=30)
    bundle = make_key(credits="5")
    response, events = stream(gateway, bundle, {"model": slug, "max_tokens": 40, "provider": {"order": [provider]}})
    assert response.status_code == 200 and events[-1] == "[DONE]"
    errors = [e for e in events[:-1] if "error" in e]
    assert len(errors) == 1 and errors[0]["choices"][0]["finish_reason"] == "error"
    delivered = sum(1 for e in events[:-1] if e.get("choices") and (e["choices"][0].get("delta") or {}).get("content"))
    assert 0 < delivered < 30
    record = generation(response.headers["x-generation-id"])
    assert record.finish_reason == "error" and record.tokens_completion == delivered
    assert record.cost == expected_cost(
        endpoint, {"prompt_tokens": record.tokens_prompt, "completion_tokens": delivered}
    )
    assert_ledger_consistent(bundle.account)


def test_thinking_through_the_anthropic_dialect_comes_back_as_reasoning(gateway, simulator):
    bundle = make_key(credits="5")
    slug = "anthropic/claude-3.7-sonnet"
    endpoint = _endpoint(slug, "anthropic")
    response = post(
        gateway,
        bundle,
        {"model": slug, "max_tokens": 2000, "reasoning": {"max_tokens": 1024}, "provider": {"only": ["anthropic"]}},
    )
    assert response.status_code == 200, response.text
    upstream = simulator.last_request("anthropic")
    assert upstream["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    message = response.json()["choices"][0]["message"]
    assert message["reasoning"] and message["content"]
    usage = response.json()["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0 or usage["completion_tokens"] > 0
    assert usage["cost"] == nanos_to_usd_number(expected_cost(endpoint, usage))
    assert_ledger_consistent(bundle.account)


def test_gemini_rate_limits_everywhere_give_429_with_the_smallest_retry_delay(gateway, simulator):
    simulator.set("google-ai-studio", fail="429", retry_after=6)
    simulator.set("google-vertex", fail="429", retry_after=4)
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": GEMINI, "max_tokens": 5, "provider": {"sort": "price"}})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"  # from Gemini's RetryInfo in the body
    error = response.json()["error"]
    assert error["metadata"]["availability"]["code"] == "capacity_exhausted"
    assert [e["provider"] for e in error["metadata"]["previous_errors"]] == ["Google AI Studio", "Google"]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


def test_legacy_completions_go_only_to_openai_dialect_endpoints(gateway, simulator):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": CLAUDE, "prompt": "Once upon a time", "max_tokens": 5}, path="completions")
    assert response.status_code == 404
    availability = response.json()["error"]["metadata"]["availability"]
    assert availability["code"] == "constraint_filtered" and availability["constraint"]["field"] == "api_type"
    # With an OpenAI-dialect fallback model, that one serves.
    response = post(
        gateway, bundle, {"model": CLAUDE, "models": ["openai/gpt-4o-mini"], "prompt": "Once upon a time", "max_tokens": 5},
        path="completions",
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "openai/gpt-4o-mini" and response.json()["object"] == "text_completion"
    assert simulator.stats("anthropic")["requests"] == 0
