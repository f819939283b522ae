"""The public catalog API: /models, /models/count, /model/{author}/{slug},
/models/{author}/{slug}/endpoints and /providers. Every body is checked against the OpenRouter spec."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache

from routing import api
from routing.models import Endpoint, Model
from routing.services import DEFAULT_CATALOG_PATH, catalog_load
from tests.openapi import validate_response

API = "/api/v1"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def catalog(db, shipped) -> dict:
    catalog_load(data=shipped)
    return shipped


def call(client, url: str, template: str, status: int = 200) -> dict:
    """GET ``url``, assert the status and JSON content type, validate the body against the spec."""
    response = client.get(url)
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    validate_response(template, "get", status, body)
    return body


def models(client, query: str = "") -> dict:
    return call(client, f"{API}/models{query}", "/models")


def ids(body: dict) -> list[str]:
    return [m["id"] for m in body["data"]]


def usd(price: str) -> Decimal:
    return Decimal(price)


# --- GET /models ---------------------------------------------------------------------------------


def test_models_lists_the_text_catalog(client, catalog):
    body = models(client)
    text_models = [m for m in catalog["models"] if "text" in m["output_modalities"]]
    assert body["total_count"] == len(body["data"]) == len(text_models)
    assert body["links"] == {"next": None}
    assert "openai/text-embedding-3-small" not in ids(body)
    assert len(set(ids(body))) == len(body["data"])
    created = [m["created"] for m in body["data"]]
    assert created == sorted(created, reverse=True), "newest first by default"


def test_model_object_shape(client, catalog):
    body = models(client)
    gpt4o = next(m for m in body["data"] if m["id"] == "openai/gpt-4o")
    assert gpt4o["pricing"] == {
        "prompt": "0.0000025",
        "completion": "0.00001",
        "image": "0.003613",
        "input_cache_read": "0.00000125",
    }
    assert gpt4o["architecture"] == {
        "modality": "text+image+file->text",
        "input_modalities": ["text", "image", "file"],
        "output_modalities": ["text"],
        "tokenizer": "GPT",
        "instruct_type": None,
    }
    assert gpt4o["top_provider"] == {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": True}
    assert gpt4o["links"] == {"details": "/api/v1/models/openai/gpt-4o/endpoints"}
    assert gpt4o["hugging_face_id"] is None and gpt4o["per_request_limits"] is None
    assert gpt4o["supported_voices"] is None and gpt4o["expiration_date"] is None
    assert gpt4o["knowledge_cutoff"] == "2023-10-01"
    assert "tools" in gpt4o["supported_parameters"]
    sonar = next(m for m in body["data"] if m["id"] == "perplexity/sonar")
    assert sonar["pricing"]["request"] == "0.005"
    r1 = next(m for m in body["data"] if m["id"] == "deepseek/deepseek-r1")
    assert r1["reasoning"]["mandatory"] is True and r1["default_parameters"] == {"temperature": 0.6, "top_p": 0.95}


def test_model_pricing_is_the_cheapest_endpoint_and_parameters_the_union(client, catalog):
    body = models(client)
    llama = next(m for m in body["data"] if m["id"] == "meta-llama/llama-3.3-70b-instruct")
    assert llama["pricing"] == {"prompt": "0.00000013", "completion": "0.00000039"}
    endpoints = Endpoint.objects.filter(model__slug="meta-llama/llama-3.3-70b-instruct", active=True)
    union = sorted({p for e in endpoints for p in e.supported_parameters})
    assert llama["supported_parameters"] == union
    assert len(union) > len(endpoints[0].supported_parameters) or len(endpoints) == 1


def test_free_variants_are_listed_with_zero_prices(client, catalog):
    body = models(client)
    free = [m for m in body["data"] if m["id"].endswith(":free")]
    assert {"meta-llama/llama-3.3-70b-instruct:free", "deepseek/deepseek-chat-v3-0324:free"} <= {m["id"] for m in free}
    for model in free:
        assert model["pricing"]["prompt"] == "0" and model["pricing"]["completion"] == "0"
        assert model["canonical_slug"] == model["id"].removesuffix(":free")


def test_models_pagination(client, catalog):
    full = ids(models(client))
    page = models(client, "?limit=10")
    assert ids(page) == full[:10] and page["total_count"] == len(full)
    assert page["links"]["next"] == "/api/v1/models?limit=10&offset=10"

    seen, url = [], "/api/v1/models?limit=10"
    while url:
        body = call(client, url, "/models")
        seen += ids(body)
        url = body["links"]["next"]
    assert seen == full

    tail = models(client, f"?offset={len(full) - 3}")
    assert ids(tail) == full[-3:] and tail["links"]["next"] is None
    assert models(client, f"?offset={len(full) + 5}")["data"] == []
    assert ids(models(client, "?limit=1000")) == full


def test_models_next_link_keeps_the_filters(client, catalog):
    body = models(client, "?model_authors=meta-llama&limit=2")
    query = parse_qs(urlsplit(body["links"]["next"]).query)
    assert query == {"model_authors": ["meta-llama"], "limit": ["2"], "offset": ["2"]}


def test_models_output_modalities(client, catalog):
    everything = models(client, "?output_modalities=all")
    assert everything["total_count"] == len(catalog["models"])
    assert "openai/text-embedding-3-small" in ids(everything)
    embeddings = models(client, "?output_modalities=embeddings")
    assert "openai/text-embedding-3-small" in ids(embeddings)
    assert ids(embeddings) == sorted(
        (m["id"] for m in catalog["models"] if m["output_modalities"] == ["embeddings"]),
        key=ids(everything).index,
    )
    both = models(client, "?output_modalities=text,embeddings")
    assert both["total_count"] == everything["total_count"]


def test_models_input_modalities(client, catalog):
    body = models(client, "?input_modalities=image,file")
    assert body["data"]
    for model in body["data"]:
        assert {"image", "file"} <= set(model["architecture"]["input_modalities"])
    assert "anthropic/claude-3.5-haiku" not in ids(body)  # text+image only


def test_models_supported_parameters(client, catalog):
    body = models(client, "?supported_parameters=tools,reasoning")
    assert body["data"]
    for model in body["data"]:
        assert {"tools", "reasoning"} <= set(model["supported_parameters"])
    assert "openai/gpt-4o" not in ids(body)
    assert models(client, "?supported_parameters=not_a_parameter")["data"] == []


def test_models_search_authors_and_providers(client, catalog):
    llamas = models(client, "?q=LLaMA")
    assert llamas["data"] and all("llama" in (m["id"] + m["name"]).lower() for m in llamas["data"])

    authored = models(client, "?model_authors=anthropic,google")
    assert {m["id"].split("/")[0] for m in authored["data"]} == {"anthropic", "google"}

    on_groq = models(client, "?providers=groq")
    groq_models = set(
        Endpoint.objects.filter(provider__slug="groq", active=True).values_list("model__slug", flat=True)
    )
    assert set(ids(on_groq)) == groq_models
    assert ids(models(client, "?providers=Groq")) == ids(on_groq), "display names work too"
    assert models(client, "?providers=nobody")["total_count"] == 0


def test_models_extra_filters(client, catalog):
    big = models(client, "?context=1000000")
    assert big["data"] and all(m["context_length"] >= 1_000_000 for m in big["data"])
    cheap = models(client, "?max_price=0.1")
    assert cheap["data"] and all(usd(m["pricing"]["prompt"]) * 1_000_000 <= Decimal("0.1") for m in cheap["data"])
    pricey = models(client, "?min_output_price=15")
    assert pricey["data"] and all(usd(m["pricing"]["completion"]) * 1_000_000 >= 15 for m in pricey["data"])
    zdr = models(client, "?zdr=true")
    assert "openai/gpt-4o" not in ids(zdr) and "meta-llama/llama-3.3-70b-instruct" in ids(zdr)


@pytest.mark.parametrize(
    ("sort", "key", "descending"),
    [
        ("pricing-low-to-high", lambda m: usd(m["pricing"]["prompt"]) + usd(m["pricing"]["completion"]), False),
        ("pricing-high-to-low", lambda m: usd(m["pricing"]["prompt"]) + usd(m["pricing"]["completion"]), True),
        ("context-high-to-low", lambda m: m["context_length"], True),
        ("newest", lambda m: m["created"], True),
    ],
)
def test_models_sort(client, catalog, sort, key, descending):
    body = models(client, f"?sort={sort}")
    values = [key(m) for m in body["data"]]
    assert values == sorted(values, reverse=descending)
    assert body["total_count"] == models(client)["total_count"]


def test_models_other_spec_sorts_and_category_are_accepted(client, catalog):
    default = ids(models(client))
    assert ids(models(client, "?sort=most-popular")) == default
    assert ids(models(client, "?category=programming")) == default
    assert ids(models(client, "?category=anything-at-all")) == default


@pytest.mark.parametrize(
    "query",
    [
        "?offset=abc",
        "?offset=-1",
        "?offset=1.5",
        "?limit=0",
        "?limit=-5",
        "?limit=1001",
        "?limit=ten",
        "?sort=cheapest",
        "?input_modalities=smell",
        "?output_modalities=text,smell",
        "?context=0",
        "?context=big",
        "?max_price=abc",
        "?min_price=-1",
        "?max_output_price=NaN",
        "?zdr=maybe",
    ],
)
def test_models_bad_query_is_400(client, catalog, query):
    body = call(client, f"{API}/models{query}", "/models", status=400)
    assert body["error"]["code"] == 400
    assert "Invalid query parameter" in body["error"]["message"]


def test_models_empty_catalog(client, db):
    body = models(client)
    assert body == {"data": [], "total_count": 0, "links": {"next": None}}


def test_models_hides_inactive_models_and_models_without_endpoints(client, catalog):
    Model.objects.filter(slug="openai/gpt-4o").update(active=False)
    Endpoint.objects.filter(model__slug="x-ai/grok-3").update(active=False)
    listed = ids(models(client))
    assert "openai/gpt-4o" not in listed and "x-ai/grok-3" not in listed


def test_models_list_is_cached_per_catalog_version(client, catalog, django_capture_on_commit_callbacks):
    before = models(client)
    Model.objects.filter(slug="openai/gpt-4o").update(name="Renamed")
    assert models(client) == before, "served from the cache"
    other_query = models(client, "?limit=500")
    assert next(m for m in other_query["data"] if m["id"] == "openai/gpt-4o")["name"] == "Renamed"

    shipped = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    shipped["models"] = [m for m in shipped["models"] if m["id"] != "openai/gpt-4o"]
    with django_capture_on_commit_callbacks(execute=True):
        catalog_load(data=shipped)
    after = models(client)
    assert "openai/gpt-4o" not in ids(after)
    assert after["total_count"] == before["total_count"] - 1


def test_models_error_responses_are_not_cached(client, catalog, rf):
    call(client, f"{API}/models?limit=0", "/models", status=400)
    assert cache.get(api._models_cache_key(rf.get(f"{API}/models?limit=0"))) is None
    assert cache.get(api._models_cache_key(rf.get(f"{API}/models?limit=1"))) is None
    models(client, "?limit=1")
    assert cache.get(api._models_cache_key(rf.get(f"{API}/models?limit=1"))) is not None


def test_models_only_get(client, catalog):
    response = client.post(f"{API}/models", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response.json() == {"error": {"code": 405, "message": "Method not allowed"}}
    assert response["Allow"] == "GET, HEAD"


def test_models_trailing_slash(client, catalog):
    assert ids(call(client, f"{API}/models/", "/models")) == ids(models(client))


# --- GET /models/count -------------------------------------------------------------------------------


def test_models_count(client, catalog):
    body = call(client, f"{API}/models/count", "/models/count")
    assert body == {"data": {"count": models(client)["total_count"]}}
    everything = call(client, f"{API}/models/count?output_modalities=all", "/models/count")
    assert everything["data"]["count"] == len(catalog["models"])
    embeddings = call(client, f"{API}/models/count?output_modalities=embeddings", "/models/count")
    embedding_models = [m for m in catalog["models"] if m["output_modalities"] == ["embeddings"]]
    assert len(embedding_models) >= 4
    assert embeddings == {"data": {"count": len(embedding_models)}}


def test_models_count_bad_modality(client, catalog):
    body = call(client, f"{API}/models/count?output_modalities=smell", "/models/count", status=400)
    assert body["error"]["code"] == 400


# --- GET /model/{author}/{slug} --------------------------------------------------------------------------


def model(client, model_id: str, status: int = 200) -> dict:
    return call(client, f"{API}/model/{model_id}", "/model/{author}/{slug}", status)


def test_model_detail_matches_the_list_entry(client, catalog):
    listed = {m["id"]: m for m in models(client, "?output_modalities=all")["data"]}
    for model_id in ("openai/gpt-4o", "openai/gpt-4.1", "anthropic/claude-3.5-sonnet", "openai/text-embedding-3-small"):
        assert model(client, model_id) == {"data": listed[model_id]}


def test_model_detail_variants_and_aliases(client, catalog):
    free = model(client, "meta-llama/llama-3.3-70b-instruct:free")["data"]
    assert free["id"] == "meta-llama/llama-3.3-70b-instruct:free" and free["pricing"]["prompt"] == "0"
    nitro = model(client, "openai/gpt-4o:nitro")["data"]
    assert nitro["id"] == "openai/gpt-4o", "dynamic variants resolve to the model"
    canonical = model(client, "openai/gpt-4.1-2025-04-14")["data"]
    assert canonical["id"] == "openai/gpt-4.1", "the permanent slug resolves"
    by_canonical = model(client, "deepseek/deepseek-chat-v3-0324")["data"]
    assert by_canonical["id"] == "deepseek/deepseek-chat-v3-0324"
    encoded = call(client, f"{API}/model/openai/gpt-4o%3Anitro", "/model/{author}/{slug}")
    assert encoded["data"]["id"] == "openai/gpt-4o"


@pytest.mark.parametrize(
    "model_id", ["openai/gpt-5-ultra", "nobody/nothing", "openai/gpt-4o:free", "openai/gpt-4o:bogus"]
)
def test_model_detail_unknown_is_404(client, catalog, model_id):
    body = model(client, model_id, status=404)
    assert body["error"]["code"] == 404 and model_id in body["error"]["message"]


def test_model_detail_inactive_is_404(client, catalog):
    Model.objects.filter(slug="openai/gpt-4o").update(active=False)
    model(client, "openai/gpt-4o", status=404)


# --- GET /models/{author}/{slug}/endpoints -----------------------------------------------------------------


def endpoints(client, model_id: str, status: int = 200) -> dict:
    return call(client, f"{API}/models/{model_id}/endpoints", "/models/{author}/{slug}/endpoints", status)


def test_endpoints_of_a_multi_provider_model(client, catalog):
    data = endpoints(client, "meta-llama/llama-3.3-70b-instruct")["data"]
    assert data["id"] == "meta-llama/llama-3.3-70b-instruct"
    assert data["name"] == "Meta: Llama 3.3 70B Instruct"
    assert data["architecture"]["tokenizer"] == "Llama3" and data["architecture"]["instruct_type"] == "llama3"
    rows = data["endpoints"]
    assert [e["tag"] for e in rows] == ["deepinfra/turbo", "deepinfra", "groq", "together", "fireworks"]
    totals = [usd(e["pricing"]["prompt"]) + usd(e["pricing"]["completion"]) for e in rows]
    assert totals == sorted(totals) and len(set(totals)) == len(totals), "cheapest first, all different"
    groq = rows[2]
    assert groq == {
        "name": "Groq | meta-llama/llama-3.3-70b-instruct",
        "model_id": "meta-llama/llama-3.3-70b-instruct",
        "model_name": "Meta: Llama 3.3 70B Instruct",
        "context_length": 131072,
        "pricing": {"prompt": "0.00000059", "completion": "0.00000079"},
        "provider_name": "Groq",
        "tag": "groq",
        "quantization": "unknown",
        "max_completion_tokens": 32768,
        "max_prompt_tokens": None,
        "supported_parameters": groq["supported_parameters"],
        "status": 0,
        "uptime_last_30m": None,
        "uptime_last_5m": None,
        "uptime_last_1d": None,
        "supports_implicit_caching": False,
        "latency_last_30m": None,
        "throughput_last_30m": None,
        "native_tools": {},
        "service_tier": None,
        "supports_diarization": False,
        "supports_tool_choice": {"auto": True, "none": True, "required": True, "function": True},
    }
    assert "tools" in groq["supported_parameters"]


def test_endpoints_show_measured_uptime_latency_and_throughput(client, catalog):
    from routing.stats import stats_flush, stats_record

    groq = Endpoint.objects.get(model__slug="meta-llama/llama-3.3-70b-instruct", tag="groq")
    for i in range(20):
        stats_record(groq.id, ok=True, status=200, ttft_ms=200 + i * 10, tokens_per_second=100 + i)
    stats_record(groq.id, ok=False, status=502)
    stats_record(groq.id, ok=False, status=429)  # not counted in uptime
    stats_flush()
    rows = endpoints(client, "meta-llama/llama-3.3-70b-instruct")["data"]["endpoints"]
    measured = next(e for e in rows if e["tag"] == "groq")
    assert measured["uptime_last_5m"] == measured["uptime_last_30m"] == measured["uptime_last_1d"] == 95.24
    latency, throughput = measured["latency_last_30m"], measured["throughput_last_30m"]
    assert set(latency) == set(throughput) == {"p50", "p75", "p90", "p99"}
    assert 270 <= latency["p50"] <= 320 and latency["p50"] < latency["p75"] < latency["p90"] < latency["p99"] <= 390 * 1.2
    assert 100 / 1.2 <= throughput["p99"] < throughput["p90"] < throughput["p75"] < throughput["p50"] <= 120
    for other in (e for e in rows if e["tag"] != "groq"):
        assert other["uptime_last_5m"] is None and other["latency_last_30m"] is None


def test_endpoints_of_closed_and_free_models(client, catalog):
    claude = endpoints(client, "anthropic/claude-3.5-sonnet")["data"]["endpoints"]
    assert {e["provider_name"] for e in claude} == {"Anthropic", "Google"}
    assert all(e["quantization"] is None for e in claude)
    assert claude[0]["pricing"]["input_cache_write"] == "0.00000375"
    free = endpoints(client, "deepseek/deepseek-chat-v3-0324:free")["data"]
    assert free["id"] == "deepseek/deepseek-chat-v3-0324:free"
    assert [e["pricing"] for e in free["endpoints"]] == [{"prompt": "0", "completion": "0"}]
    assert free["endpoints"][0]["model_id"] == "deepseek/deepseek-chat-v3-0324"


def test_endpoints_leave_out_inactive_ones(client, catalog):
    Endpoint.objects.filter(model__slug="meta-llama/llama-3.3-70b-instruct", tag="groq").update(active=False)
    rows = endpoints(client, "meta-llama/llama-3.3-70b-instruct")["data"]["endpoints"]
    assert "groq" not in [e["tag"] for e in rows] and len(rows) == 4


def test_endpoints_of_a_model_whose_endpoints_are_all_inactive(client, catalog):
    Endpoint.objects.filter(model__slug="x-ai/grok-3").update(active=False)
    assert endpoints(client, "x-ai/grok-3")["data"]["endpoints"] == []


def test_endpoints_unknown_model_is_404(client, catalog):
    body = endpoints(client, "nobody/nothing", status=404)
    assert body["error"] == {"code": 404, "message": "Model nobody/nothing not found"}
    Model.objects.filter(slug="openai/gpt-4o").update(active=False)
    endpoints(client, "openai/gpt-4o", status=404)


# --- GET /providers --------------------------------------------------------------------------------------


def test_providers(client, catalog):
    body = call(client, f"{API}/providers", "/providers")
    by_slug = {p["slug"]: p for p in body["data"]}
    used = {e["provider"] for m in catalog["models"] for e in m["endpoints"]}
    assert set(by_slug) == used
    assert by_slug["openai"] == {
        "name": "OpenAI",
        "slug": "openai",
        "privacy_policy_url": "https://openai.com/policies/privacy-policy/",
        "terms_of_service_url": "https://openai.com/policies/services-agreement/",
        "status_page_url": "https://status.openai.com/",
        "headquarters": "US",
        "datacenters": ["US"],
    }
    assert by_slug["mistral"]["headquarters"] == "FR"
    names = [p["name"] for p in body["data"]]
    assert names == sorted(names)


def test_providers_without_active_endpoints_are_hidden(client, catalog):
    Endpoint.objects.filter(provider__slug="perplexity").update(active=False)
    body = call(client, f"{API}/providers", "/providers")
    assert "perplexity" not in {p["slug"] for p in body["data"]}


def test_providers_empty(client, db):
    assert call(client, f"{API}/providers", "/providers") == {"data": []}
