"""The catalog loader (routing.services.catalog_load), load_catalog, and the shipped catalog."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command

from routing.models import Endpoint, Model, Provider
from routing.services import CATALOG_VERSION_CACHE_KEY, DEFAULT_CATALOG_PATH, CatalogError, catalog_load
from tests.openapi import spec


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def data(shipped) -> dict:
    return copy.deepcopy(shipped)


def small_catalog() -> dict:
    return {
        "version": 1,
        "providers": [
            {"slug": "alpha", "name": "Alpha", "base_url": "https://alpha.example/v1", "api_key_env": "ALPHA_KEY",
             "headquarters": "US", "datacenters": ["US", "DE"],
             "data_policy": {"trains_on_data": False, "retains_prompts": False, "retention_days": None, "zdr": True}},
            {"slug": "beta", "name": "Beta"},
        ],
        "models": [
            {
                "id": "acme/one", "name": "Acme: One", "created": 1700000000, "context_length": 8192,
                "input_modalities": ["text"], "output_modalities": ["text"], "tokenizer": "Other",
                "endpoints": [
                    {"provider": "alpha", "upstream_model_id": "one", "context_length": 8192,
                     "supported_parameters": ["temperature"], "pricing": {"prompt": "1", "completion": "2"}},
                    {"provider": "beta", "upstream_model_id": "one-b", "context_length": 4096,
                     "supported_parameters": ["temperature", "tools"],
                     "pricing": {"prompt": "0.5", "completion": "1.5", "input_cache_read": "0.125", "request": "0.001"}},
                ],
            },
            {
                "id": "acme/two:free", "name": "Acme: Two (free)", "created": 1700000001, "context_length": 4096,
                "input_modalities": ["text"], "output_modalities": ["text"], "tokenizer": "Other",
                "endpoints": [
                    {"provider": "beta", "tag": "beta/free", "upstream_model_id": "two", "context_length": 4096,
                     "supported_parameters": [], "pricing": {"prompt": "0", "completion": "0"}},
                ],
            },
        ],
    }


def table_counts() -> tuple[int, int, int]:
    return Provider.objects.count(), Model.objects.count(), Endpoint.objects.count()


# --- the shipped catalog ------------------------------------------------------------------------


def test_shipped_catalog_is_broad(shipped):
    models = shipped["models"]
    authors = {m["id"].split("/")[0] for m in models}
    used_providers = {e["provider"] for m in models for e in m["endpoints"]}
    assert len(models) >= 25
    assert len(authors) >= 8, authors
    assert len(shipped["providers"]) >= 10
    assert len(used_providers) >= 10
    assert {"openai", "anthropic", "google", "meta-llama", "mistralai", "deepseek", "qwen", "x-ai"} <= authors


def test_shipped_catalog_has_competing_providers_at_different_prices(shipped):
    competitive = []
    for model in shipped["models"]:
        endpoints = model["endpoints"]
        assert 1 <= len(endpoints) <= 5, model["id"]
        prices = {(Decimal(e["pricing"]["prompt"]), Decimal(e["pricing"]["completion"])) for e in endpoints}
        if len(endpoints) >= 2 and len(prices) >= 2 and len({e["provider"] for e in endpoints}) >= 2:
            competitive.append(model["id"])
    assert len(competitive) >= 5, competitive
    assert "meta-llama/llama-3.3-70b-instruct" in competitive


def test_shipped_catalog_free_variants_cost_nothing(shipped):
    free = [m for m in shipped["models"] if m["id"].endswith(":free")]
    ids = {m["id"] for m in shipped["models"]}
    assert {"meta-llama/llama-3.3-70b-instruct:free", "deepseek/deepseek-chat-v3-0324:free"} <= {m["id"] for m in free}
    for model in free:
        assert model["id"].removesuffix(":free") in ids, "a free variant sits next to its paid model"
        for endpoint in model["endpoints"]:
            assert endpoint["pricing"]["prompt"] == "0" and endpoint["pricing"]["completion"] == "0"


def test_shipped_catalog_well_known_prices(shipped):
    by_id = {m["id"]: m for m in shipped["models"]}

    def price(model_id, provider):
        endpoint = next(e for e in by_id[model_id]["endpoints"] if e["provider"] == provider)
        return endpoint["pricing"]["prompt"], endpoint["pricing"]["completion"]

    assert price("openai/gpt-4o", "openai") == ("2.5", "10")
    assert price("anthropic/claude-3.5-sonnet", "anthropic") == ("3", "15")
    assert price("meta-llama/llama-3.3-70b-instruct", "groq") == ("0.59", "0.79")


def test_shipped_provider_names_are_openrouter_provider_names(shipped):
    # PublicEndpoint.provider_name must be one of the spec's ProviderName values.
    allowed = set(spec()["components"]["schemas"]["ProviderName"]["enum"])
    assert {p["name"] for p in shipped["providers"]} <= allowed


def test_shipped_providers_have_connection_and_policy_details(shipped):
    dialects = Counter(p.get("dialect", "openai") for p in shipped["providers"])
    assert dialects["openai"] >= 10 and dialects["anthropic"] == 1 and dialects["google"] == 2
    for provider in shipped["providers"]:
        assert provider["api_key_env"].endswith("_API_KEY"), provider["slug"]
        assert provider["privacy_policy_url"].startswith("https://"), provider["slug"]
        assert "data_policy" in provider and "supports_cancellation" in provider, provider["slug"]
        if provider.get("dialect", "openai") == "openai":
            assert provider["base_url"].startswith("https://"), provider["slug"]


def test_shipped_catalog_loads(db, shipped):
    result = catalog_load(data=shipped)
    endpoints = sum(len(m["endpoints"]) for m in shipped["models"])
    assert (result.providers, result.models, result.endpoints) == (len(shipped["providers"]), len(shipped["models"]), endpoints)
    assert result.created == result.providers + result.models + result.endpoints
    assert (result.updated, result.deactivated) == (0, 0)
    assert table_counts() == (result.providers, result.models, result.endpoints)

    gpt4o = Endpoint.objects.get(model__slug="openai/gpt-4o", tag="openai")
    assert (gpt4o.price_prompt, gpt4o.price_completion, gpt4o.price_cache_read) == (2_500_000_000, 10_000_000_000, 1_250_000_000)
    assert gpt4o.price_image == 3_613_000  # 0.003613 USD per image
    sonar = Endpoint.objects.get(model__slug="perplexity/sonar")
    assert sonar.price_request == 5_000_000  # 0.005 USD per request
    free = Model.objects.get(slug="meta-llama/llama-3.3-70b-instruct:free")
    assert free.canonical_slug == "meta-llama/llama-3.3-70b-instruct" and free.author == "meta-llama"
    deepinfra = Provider.objects.get(slug="deepinfra")
    assert deepinfra.api_key_env == "DEEPINFRA_API_KEY" and deepinfra.zdr and not deepinfra.trains_on_data


# --- the loader ------------------------------------------------------------------------------------


def test_load_is_idempotent(db, data):
    first = catalog_load(data=data)
    rows = table_counts()
    snapshot = list(Endpoint.objects.order_by("pk").values())
    second = catalog_load(data=data)
    assert table_counts() == rows
    assert list(Endpoint.objects.order_by("pk").values()) == snapshot
    assert (second.providers, second.models, second.endpoints) == (first.providers, first.models, first.endpoints)
    assert (second.created, second.updated, second.deactivated) == (0, 0, 0)
    assert second.summary() == (
        f"catalog: {second.providers} providers, {second.models} models, {second.endpoints} endpoints "
        "(created 0, updated 0, deactivated 0)"
    )


def test_load_updates_changed_rows_in_place(db):
    data = small_catalog()
    catalog_load(data=data)
    endpoint = Endpoint.objects.get(model__slug="acme/one", tag="alpha")
    data["models"][0]["endpoints"][0]["pricing"]["prompt"] = "1.25"
    data["providers"][1]["name"] = "Beta Cloud"
    result = catalog_load(data=data)
    assert (result.created, result.updated, result.deactivated) == (0, 2, 0)
    endpoint.refresh_from_db()
    assert endpoint.price_prompt == 1_250_000_000
    assert Provider.objects.get(slug="beta").name == "Beta Cloud"
    assert table_counts() == (2, 2, 3)


def test_defaults_and_derived_fields(db):
    catalog_load(data=small_catalog())
    beta = Provider.objects.get(slug="beta")
    # An unknown data policy is assumed to retain and train, as OpenRouter does.
    assert beta.trains_on_data and beta.retains_prompts and not beta.zdr and beta.dialect == "openai"
    one = Model.objects.get(slug="acme/one")
    assert one.author == "acme" and one.canonical_slug == "acme/one" and one.active
    cheap = Endpoint.objects.get(model=one, tag="beta")
    assert (cheap.price_cache_read, cheap.price_cache_write, cheap.price_request) == (125_000_000, None, 1_000_000)
    assert cheap.input_modalities == ["text"] and cheap.status == 0
    assert Model.objects.get(slug="acme/two:free").canonical_slug == "acme/two"


def test_missing_models_and_endpoints_are_deactivated_not_deleted(db):
    data = small_catalog()
    catalog_load(data=data)
    del data["models"][1]  # acme/two:free
    del data["models"][0]["endpoints"][1]  # acme/one @ beta
    result = catalog_load(data=data)
    assert result.details["models"]["deactivated"] == 1
    assert result.details["endpoints"]["deactivated"] == 2  # the removed endpoint and the free model's
    assert result.deactivated == 3
    assert table_counts() == (2, 2, 3)
    assert not Model.objects.get(slug="acme/two:free").active
    assert not Endpoint.objects.get(model__slug="acme/one", tag="beta").active
    assert Endpoint.objects.get(model__slug="acme/one", tag="alpha").active

    again = catalog_load(data=data)
    assert again.deactivated == 0, "already inactive rows are not counted twice"

    restored = catalog_load(data=small_catalog())
    assert restored.created == 0 and restored.updated == 3 and restored.deactivated == 0
    assert Model.objects.filter(active=True).count() == 2 and Endpoint.objects.filter(active=True).count() == 3


def test_load_bumps_catalog_version_after_commit(db, django_capture_on_commit_callbacks):
    cache.set(CATALOG_VERSION_CACHE_KEY, 1)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        catalog_load(data=small_catalog())
    assert len(callbacks) == 1
    assert cache.get(CATALOG_VERSION_CACHE_KEY) > 1


def _mutate(path: str, value, *, delete: bool = False):
    def apply(data):
        target = data
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
        if delete:
            del target[last]
        else:
            target[last] = value
        return data

    return apply


BAD_FILES = [
    ("unknown provider", _mutate("models.0.endpoints.0.provider", "gamma"),
     "models[0](acme/one).endpoints[0].provider: unknown provider 'gamma'"),
    ("negative price", _mutate("models.0.endpoints.0.pricing.prompt", "-0.5"),
     "models[0](acme/one).endpoints[0].pricing.prompt: '-0.5' is negative"),
    ("too fine a price", _mutate("models.0.endpoints.0.pricing.completion", "0.0000000001"),
     "is finer than 1e-15 USD per token"),
    ("too fine a request price", _mutate("models.0.endpoints.1.pricing.request", "0.0000000001"),
     "'0.0000000001' is finer than 1e-9 USD"),
    ("float price", _mutate("models.0.endpoints.0.pricing.prompt", 2.5), 'must be a decimal string such as "2.5"'),
    ("price not a number", _mutate("models.0.endpoints.0.pricing.prompt", "cheap"), "'cheap' is not a decimal amount"),
    ("missing completion price", _mutate("models.0.endpoints.0.pricing.completion", None, delete=True),
     "models[0](acme/one).endpoints[0].pricing.completion: missing required field"),
    ("missing model field", _mutate("models.0.context_length", None, delete=True),
     "models[0](acme/one).context_length: missing required field"),
    ("missing provider name", _mutate("providers.1.name", None, delete=True),
     "providers[1](beta).name: missing required field"),
    ("unknown field", _mutate("models.0.contxt_length", 5), "models[0](acme/one).contxt_length: unknown field"),
    ("no endpoints", _mutate("models.1.endpoints", []), "models[1](acme/two:free).endpoints: must be a non-empty list"),
    ("bad modality", _mutate("models.0.input_modalities", ["text", "smell"]), "unknown value(s) ['smell']"),
    ("bad parameter", _mutate("models.0.endpoints.0.supported_parameters", ["temprature"]), "unknown value(s) ['temprature']"),
    ("bad tokenizer", _mutate("models.0.tokenizer", "BPE"), "models[0](acme/one).tokenizer: 'BPE' is not one of"),
    ("bad quantization", _mutate("models.0.endpoints.0.quantization", "q4_k_m"), "'q4_k_m' is not one of"),
    ("bad status", _mutate("models.0.endpoints.0.status", 7), "status: 7 is not one of"),
    ("duplicate model", lambda d: {**d, "models": d["models"] + [copy.deepcopy(d["models"][0])]},
     "duplicate model id 'acme/one'"),
    ("duplicate tag", _mutate("models.0.endpoints.1.provider", "alpha"), "duplicate endpoint tag 'alpha'"),
    ("tag of another provider", _mutate("models.0.endpoints.0.tag", "beta/fast"), "'beta/fast' must be 'alpha'"),
    ("bad model id", _mutate("models.0.id", "no-author"), "models[0].id: 'no-author' is not valid"),
    ("bad country", _mutate("providers.0.headquarters", "USA"), "providers[0](alpha).headquarters: 'USA' is not valid"),
    ("bad dialect", _mutate("providers.0.dialect", "soap"), "'soap' is not one of"),
    ("zdr that retains", _mutate("providers.0.data_policy.retains_prompts", True), "cannot retain prompts"),
    ("bad default parameter", _mutate("models.0.default_parameters", {"temp": 1}), "unknown default parameter"),
    ("not an object", lambda d: [d], "must be a JSON object"),
    ("models not a list", _mutate("models", {}), "models: must be a list"),
    ("wrong version", _mutate("version", 2), "unsupported format version 2"),
]


@pytest.mark.parametrize(("label", "mutate", "message"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_are_rejected_with_a_clear_error(db, label, mutate, message):
    data = mutate(small_catalog())
    with pytest.raises(CatalogError) as caught:
        catalog_load(data=data)
    assert message in str(caught.value), str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert table_counts() == (0, 0, 0), "nothing is written when the file is invalid"


def test_catalog_error_lists_every_problem(db):
    data = small_catalog()
    data["models"][0]["endpoints"][0]["provider"] = "gamma"
    data["models"][0]["endpoints"][1]["pricing"]["prompt"] = "-1"
    data["models"][1]["tokenizer"] = "BPE"
    with pytest.raises(CatalogError) as caught:
        catalog_load(data=data)
    assert len(caught.value.errors) == 3
    assert str(caught.value).startswith("invalid catalog (3 problem(s)):")


def test_bad_file_leaves_an_existing_catalog_untouched(db):
    catalog_load(data=small_catalog())
    data = small_catalog()
    del data["models"][1]
    data["models"][0]["endpoints"][0]["pricing"]["prompt"] = "-1"
    with pytest.raises(CatalogError):
        catalog_load(data=data)
    assert Model.objects.filter(active=True).count() == 2
    assert Endpoint.objects.get(model__slug="acme/one", tag="alpha").price_prompt == 1_000_000_000


# --- the management command --------------------------------------------------------------------------


def test_command_loads_the_shipped_catalog(db, capsys, shipped):
    call_command("load_catalog")
    out = capsys.readouterr().out.strip()
    endpoints = sum(len(m["endpoints"]) for m in shipped["models"])
    total = len(shipped["providers"]) + len(shipped["models"]) + endpoints
    assert out == (
        f"catalog: {len(shipped['providers'])} providers, {len(shipped['models'])} models, {endpoints} endpoints "
        f"(created {total}, updated 0, deactivated 0)"
    )
    call_command("load_catalog", str(DEFAULT_CATALOG_PATH))
    assert "(created 0, updated 0, deactivated 0)" in capsys.readouterr().out


def test_command_takes_a_path(db, tmp_path, capsys):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(small_catalog()))
    call_command("load_catalog", str(path))
    assert capsys.readouterr().out.strip() == (
        "catalog: 2 providers, 2 models, 3 endpoints (created 7, updated 0, deactivated 0)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"providers": [], "models": []}) + "x", "not valid JSON"),
        (json.dumps(_mutate("models.0.endpoints.0.provider", "gamma")(small_catalog())), "unknown provider 'gamma'"),
    ],
)
def test_command_rejects_bad_files(db, tmp_path, content, message):
    path = tmp_path / "catalog.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("load_catalog", str(path))
    assert table_counts() == (0, 0, 0)


def test_command_missing_file(db, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("load_catalog", str(tmp_path / "missing.json"))


def test_command_exits_non_zero_without_traceback(tmp_path):
    # A bad file is rejected before the database is touched, so this runs anywhere.
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_mutate("models.0.endpoints.0.pricing.prompt", "-1")(small_catalog())))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "openrouter_site.settings", "VAR_DIR": str(tmp_path / "var")}
    manage = Path(settings.BASE_DIR) / "manage.py"
    proc = subprocess.run(
        [sys.executable, str(manage), "load_catalog", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "'-1' is negative" in proc.stderr
