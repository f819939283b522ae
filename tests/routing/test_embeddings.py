"""``POST /api/v1/embeddings`` and ``GET /api/v1/embeddings/models`` through the live gateway and the simulator:
the ``openai`` SDK's ``embeddings.create``, exact charges (balance delta == sum of costs), fallbacks, bad input."""

from __future__ import annotations

import base64
import struct

import httpx
import pytest
from openai import OpenAI

from activity.models import Generation
from billing.money import nanos_to_usd_number, tokens_cost
from billing.selectors import ledger_sum
from billing.settlement import settlement_flush
from routing.simulator.tokens import count_tokens
from tests.factories import make_key
from tests.openapi import validate_response
from tests.routing.gateway_helpers import endpoints_of

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = "openai/text-embedding-3-small"
QWEN = "qwen/qwen3-embedding-8b"  # three providers


def client(server, bundle) -> OpenAI:
    return OpenAI(base_url=server.api, api_key=bundle.raw, max_retries=0, timeout=30)


def post(server, bundle, body: dict) -> httpx.Response:
    return httpx.post(f"{server.api}/embeddings", json=body, headers=bundle.headers, timeout=30)


def test_sdk_embeddings_are_deterministic_and_charged_exactly(gateway):
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    texts = ["The quick brown fox jumps over the lazy dog", "Embeddings, priced per token!"]
    first = sdk.embeddings.create(model=SMALL, input=texts)  # the SDK asks for base64 and decodes it
    second = sdk.embeddings.create(model=SMALL, input=texts[0], encoding_format="float", dimensions=256)
    assert first.object == "list" and first.model == SMALL
    assert [d.index for d in first.data] == [0, 1]
    assert len(first.data[0].embedding) == 1536
    assert first.data[0].embedding != first.data[1].embedding
    assert len(second.data[0].embedding) == 256
    tokens = sum(count_tokens(t) for t in texts)
    assert first.usage.prompt_tokens == tokens and first.usage.total_tokens == tokens
    assert second.usage.prompt_tokens == count_tokens(texts[0])
    again = sdk.embeddings.create(model=SMALL, input=texts)
    assert again.data[0].embedding == first.data[0].embedding  # deterministic

    endpoint = endpoints_of(SMALL)[0]
    costs = [tokens_cost(r.usage.prompt_tokens, endpoint.price_prompt) for r in (first, second, again)]
    assert all(c > 0 for c in costs)
    assert first.usage.model_extra["cost"] == nanos_to_usd_number(costs[0])
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 5 * 10**9 - sum(costs)
    assert ledger_sum(account_id=bundle.account.id) == bundle.account.balance
    records = Generation.objects.filter(account_id=bundle.account.id)
    assert records.count() == 3
    assert {g.api_type for g in records} == {"embeddings"}
    assert sum(g.cost for g in records) == sum(costs)
    assert all(g.tokens_completion == 0 and g.provider_name == "OpenAI" for g in records)


def test_raw_response_matches_spec_and_token_arrays_count_one_per_id(gateway):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": SMALL, "input": [[1, 2, 3, 4], [5, 6]], "encoding_format": "float"})
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/embeddings", "post", 200, body)
    assert body["id"].startswith("gen-") and response.headers["x-generation-id"] == body["id"]
    assert body["usage"]["prompt_tokens"] == 6
    assert isinstance(body["data"][0]["embedding"], list)
    response = post(gateway, bundle, {"model": SMALL, "input": [7, 8, 9], "encoding_format": "base64", "dimensions": 8})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    vector = struct.unpack("<8f", base64.b64decode(data[0]["embedding"]))
    assert abs(sum(v * v for v in vector) - 1) < 1e-3  # a unit vector
    assert response.json()["usage"]["prompt_tokens"] == 3
    validate_response("/embeddings", "post", 200, response.json())


def test_provider_preferences_and_fallback(gateway, simulator):
    bundle = make_key(credits="5")
    endpoints = endpoints_of(QWEN)
    assert len(endpoints) >= 3
    response = post(gateway, bundle, {"model": QWEN, "input": "hello", "provider": {"order": ["novita"]}})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "Novita"
    simulator.set("nebius", fail="503")
    simulator.set("deepinfra", fail="503")
    response = post(gateway, bundle, {"model": QWEN, "input": "hello world", "provider": {"sort": "price"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "Novita"
    novita = next(e for e in endpoints if e.provider.slug == "novita")
    assert body["usage"]["cost"] == nanos_to_usd_number(tokens_cost(2, novita.price_prompt))
    settlement_flush()
    record = Generation.objects.get(id=body["id"])
    assert [a["status"] for a in record.provider_responses] == [503, 503, 200]
    response = post(gateway, bundle, {"model": QWEN, "input": "x", "provider": {"only": ["nebius"]}})
    assert response.status_code == 503
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 5 * 10**9 - tokens_cost(1, novita.price_prompt) - record.cost
    assert ledger_sum(account_id=bundle.account.id) == bundle.account.balance


@pytest.mark.parametrize(
    "body",
    [
        {"input": "no model"},
        {"model": SMALL},
        {"model": SMALL, "input": ""},
        {"model": SMALL, "input": []},
        {"model": SMALL, "input": [""]},
        {"model": SMALL, "input": [1, "a"]},
        {"model": SMALL, "input": [[1, -2]]},
        {"model": SMALL, "input": [{"content": [{"type": "text", "text": "hi"}]}]},
        {"model": SMALL, "input": "x", "encoding_format": "int8"},
        {"model": SMALL, "input": "x", "dimensions": 0},
        {"model": SMALL, "input": "x", "dimensions": "8"},
        {"model": SMALL, "input": "x", "stream": True},
        {"model": SMALL, "input": "x", "stream": "false"},
        {"model": SMALL, "input": "x", "provider": {"order": "openai"}},
        {"model": SMALL, "input": "x", "user": 5},
        {"model": 5, "input": "x"},
        {"model": "openai/gpt-4o-mini", "input": "a chat model does not embed"},
        {"model": "nobody/nothing", "input": "x"},
    ],
)
def test_bad_input_is_a_400_and_charges_nothing(gateway, body):
    bundle = make_key(credits="5")
    response = post(gateway, bundle, body)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["code"] == response.status_code
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 5 * 10**9


def test_chat_with_an_embedding_model_is_refused(gateway):
    bundle = make_key(credits="5")
    response = httpx.post(
        f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
        json={"model": SMALL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code in (400, 404), response.text


def test_no_key_is_a_401(gateway):
    response = httpx.post(f"{gateway.api}/embeddings", json={"model": SMALL, "input": "x"}, timeout=30)
    assert response.status_code == 401


def test_embeddings_models_lists_only_embedding_models(gateway):
    response = httpx.get(f"{gateway.api}/embeddings/models", timeout=30)
    assert response.status_code == 200
    body = response.json()
    validate_response("/embeddings/models", "get", 200, body)
    ids = {m["id"] for m in body["data"]}
    assert {SMALL, QWEN, "openai/text-embedding-3-large"} <= ids
    assert all(m["architecture"]["output_modalities"] == ["embeddings"] for m in body["data"])
    qwen = next(m for m in body["data"] if m["id"] == QWEN)
    assert qwen["pricing"]["prompt"] == "0.00000001" and qwen["pricing"]["completion"] == "0"
    page = httpx.get(f"{gateway.api}/embeddings/models?limit=1&offset=1", timeout=30).json()
    assert len(page["data"]) == 1 and page["total_count"] == len(ids)
    assert httpx.get(f"{gateway.api}/embeddings/models?limit=0", timeout=30).status_code == 400
    text_models = {m["id"] for m in httpx.get(f"{gateway.api}/models", timeout=30).json()["data"]}
    assert not ids & text_models
