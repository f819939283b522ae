"""``GET /api/v1/models/user`` (the models an account may use, by routing's own filter) and
``GET /api/v1/endpoints/zdr`` (ZDR endpoints with live stats), through the live server."""

from __future__ import annotations

import httpx
import pytest
from django.db import transaction

from accounts.services import account_privacy_update
from routing.models import Endpoint, Model
from routing.stats import stats_flush, stats_record
from tests.factories import make_key
from tests.openapi import validate_response

pytestmark = pytest.mark.django_db(transaction=True)


def user_models(server, bundle, query: str = "") -> dict:
    response = httpx.get(f"{server.api}/models/user{query}", headers=bundle.headers, timeout=30)
    assert response.status_code == 200, response.text
    validate_response("/models/user", "get", 200, response.json())
    return response.json()


def privacy(account, **changes) -> None:
    settings = {"allow_training_paid": True, "allow_training_free": True, "zdr_only": False, "allowed_providers": [],
                "ignored_providers": [], "allow_training_discount": False, **changes}
    with transaction.atomic():
        account_privacy_update(account=account, **settings)


def chat_status(server, bundle, model: str) -> int:
    path, body = "chat/completions", {"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    if model.startswith(("openai/text-embedding", "qwen/qwen3-embedding", "mistralai/mistral-embed")):
        path, body = "embeddings", {"model": model, "input": "hi"}
    return httpx.post(f"{server.api}/{path}", json=body, headers=bundle.headers, timeout=30).status_code


def test_models_user_follows_the_accounts_settings_and_agrees_with_routing(gateway):
    bundle = make_key(credits="5")
    everything = {m.slug for m in Model.objects.filter(active=True) if m.endpoints.filter(active=True).exists()}
    body = user_models(gateway, bundle)
    assert {m["id"] for m in body["data"]} == everything and body["total_count"] == len(everything)

    privacy(bundle.account, zdr_only=True)
    zdr_models = {e.model.slug for e in Endpoint.objects.filter(active=True, provider__zdr=True).select_related("model")}
    ids = {m["id"] for m in user_models(gateway, bundle)["data"]}
    assert ids == zdr_models and "openai/gpt-4o-mini" not in ids and "qwen/qwen3-embedding-8b" in ids
    # routing agrees, both ways, on a model of each kind
    for model in ("openai/gpt-4o-mini", "meta-llama/llama-3.3-70b-instruct", "openai/text-embedding-3-small",
                  "qwen/qwen3-embedding-8b"):
        status = chat_status(gateway, bundle, model)
        assert (status == 200) == (model in ids), (model, status)

    privacy(bundle.account, ignored_providers=["openai", "mistral"])
    ids = {m["id"] for m in user_models(gateway, bundle)["data"]}
    assert "openai/text-embedding-3-small" not in ids and "mistralai/mistral-embed-2312" not in ids
    assert "qwen/qwen3-embedding-8b" in ids and "meta-llama/llama-3.3-70b-instruct" in ids
    assert chat_status(gateway, bundle, "openai/gpt-4o-mini") == 404
    privacy(bundle.account, allowed_providers=["groq"])
    ids = {m["id"] for m in user_models(gateway, bundle)["data"]}
    groq = {e.model.slug for e in Endpoint.objects.filter(active=True, provider__slug="groq").select_related("model")}
    assert ids == groq
    page = user_models(gateway, bundle, "?offset=0&limit=1")
    assert len(page["data"]) == 1 and page["total_count"] == len(groq)


def test_models_user_needs_a_key_and_sees_only_its_own_account(gateway):
    assert httpx.get(f"{gateway.api}/models/user", timeout=30).status_code == 401
    strict, loose = make_key(), make_key()
    privacy(strict.account, zdr_only=True)
    assert len(user_models(gateway, loose)["data"]) > len(user_models(gateway, strict)["data"])
    response = httpx.get(f"{gateway.api}/models/user?limit=0", headers=loose.headers, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == 400
    response = httpx.post(f"{gateway.api}/models/user", headers=loose.headers, timeout=30)
    assert response.status_code == 405


def test_zdr_endpoints_with_live_stats(gateway):
    groq = Endpoint.objects.get(model__slug="meta-llama/llama-3.3-70b-instruct", tag="groq")
    for _ in range(9):
        stats_record(groq.id, ok=True, status=200, ttft_ms=250, tokens_per_second=120)
    stats_record(groq.id, ok=False, status=502)
    stats_flush()
    response = httpx.get(f"{gateway.api}/endpoints/zdr", timeout=30)
    assert response.status_code == 200
    body = response.json()
    validate_response("/endpoints/zdr", "get", 200, body)
    zdr = Endpoint.objects.filter(active=True, provider__zdr=True, model__active=True)
    assert len(body["data"]) == zdr.count() > 0
    zdr_names = set(zdr.values_list("provider__name", flat=True))
    assert {e["provider_name"] for e in body["data"]} == zdr_names
    assert "OpenAI" not in zdr_names
    measured = next(e for e in body["data"] if e["tag"] == "groq" and e["model_id"] == groq.model.canonical_slug)
    assert measured["uptime_last_30m"] == 90.0
    assert measured["latency_last_30m"] is not None and measured["throughput_last_30m"] is not None
    assert httpx.post(f"{gateway.api}/endpoints/zdr", timeout=30).status_code == 405
