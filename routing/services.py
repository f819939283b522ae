"""Writes to the catalog: loading providers, models and endpoints from a catalog file.

The file format is documented in ``routing/catalog/FORMAT.md``; the shipped catalog is
``routing/catalog/default_catalog.json``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.db import transaction

from billing.money import MoneyError, usd_to_nanos
from routing import catalog_cache
from routing.models import Endpoint, Model, Provider

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parent / "catalog" / "default_catalog.json"
CATALOG_VERSION_CACHE_KEY = "catalog:version"
CATALOG_FORMAT_VERSION = 1

# Vocabularies from OpenRouter's OpenAPI spec (#/components/schemas/...).
INPUT_MODALITIES = frozenset({"text", "image", "file", "audio", "video"})
OUTPUT_MODALITIES = frozenset({"text", "image", "embeddings", "audio", "video", "rerank", "speech", "transcription"})
TOKENIZERS = frozenset(
    {"Router", "Media", "Other", "GPT", "Claude", "Gemini", "Gemma", "Grok", "Cohere", "Nova", "Qwen", "Yi",
     "DeepSeek", "Mistral", "Llama2", "Llama3", "Llama4", "PaLM", "RWKV", "Qwen3"}
)
INSTRUCT_TYPES = frozenset(
    {"none", "airoboros", "alpaca", "alpaca-modif", "chatml", "claude", "code-llama", "gemma", "llama2", "llama3",
     "mistral", "nemotron", "neural", "openchat", "phi3", "rwkv", "vicuna", "zephyr", "deepseek-r1", "deepseek-v3.1",
     "qwq", "qwen3"}
)
PARAMETERS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "top_a", "frequency_penalty", "presence_penalty", "repetition_penalty",
     "max_tokens", "max_completion_tokens", "logit_bias", "logprobs", "top_logprobs", "prediction", "seed",
     "response_format", "structured_outputs", "stop", "tools", "tool_choice", "parallel_tool_calls",
     "include_reasoning", "reasoning", "reasoning_effort", "web_search_options", "verbosity"}
)
QUANTIZATIONS = frozenset({"int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown"})
ENDPOINT_STATUSES = frozenset({0, -1, -2, -3, -5, -10})
DIALECTS = frozenset({"openai", "anthropic", "google"})
DEFAULT_PARAMETER_KEYS = frozenset(
    {"temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty", "repetition_penalty"}
)
REASONING_EFFORTS = frozenset({"max", "xhigh", "high", "medium", "low", "minimal", "none"})

# Prices in the file: USD per million tokens (token prices), USD per unit (request, image).
TOKEN_PRICE_FIELDS = {
    "prompt": "price_prompt",
    "completion": "price_completion",
    "input_cache_read": "price_cache_read",
    "input_cache_write": "price_cache_write",
    "internal_reasoning": "price_internal_reasoning",
}
UNIT_PRICE_FIELDS = {"request": "price_request", "image": "price_image"}
MAX_PRICE_NANOS = 10_000 * 10**9  # 10,000 USD per million tokens (or per request/image)

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MODEL_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(:[a-z0-9][a-z0-9._-]*)?$")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:50]
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"invalid catalog ({len(self.errors)} problem(s)):\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True)
class CatalogLoadResult:
    providers: int
    models: int
    endpoints: int
    created: int
    updated: int
    deactivated: int
    details: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"catalog: {self.providers} providers, {self.models} models, {self.endpoints} endpoints "
            f"(created {self.created}, updated {self.updated}, deactivated {self.deactivated})"
        )


def catalog_load(*, data: dict) -> CatalogLoadResult:
    """Validate ``data`` (a parsed catalog file) and upsert it, in one transaction.

    Natural keys: provider ``slug``, model ``id`` (stored as ``Model.slug``), endpoint
    ``(model, tag)``. Models and endpoints missing from the file are deactivated, never deleted
    (generations and ledger entries keep pointing at them). Loading the same file twice changes
    nothing. Raises ``CatalogError`` listing every problem before touching the database.
    """
    providers, models, endpoints = _validate(data)
    counts = {kind: {"created": 0, "updated": 0, "deactivated": 0} for kind in ("providers", "models", "endpoints")}

    with transaction.atomic():
        provider_rows = {p.slug: p for p in Provider.objects.select_for_update().all()}
        for values in providers:
            row, outcome = _upsert(Provider, provider_rows.get(values["slug"]), values)
            provider_rows[row.slug] = row
            _count(counts["providers"], outcome)

        model_rows = {m.slug: m for m in Model.objects.select_for_update().all()}
        for values in models:
            row, outcome = _upsert(Model, model_rows.get(values["slug"]), {**values, "active": True})
            model_rows[row.slug] = row
            _count(counts["models"], outcome)

        endpoint_rows = {(e.model_id, e.tag): e for e in Endpoint.objects.select_for_update().all()}
        wanted: set[tuple[int, str]] = set()
        for model_slug, provider_slug, values in endpoints:
            model_row = model_rows[model_slug]
            key = (model_row.pk, values["tag"])
            wanted.add(key)
            full = {**values, "model": model_row, "provider": provider_rows[provider_slug], "active": True}
            row, outcome = _upsert(Endpoint, endpoint_rows.get(key), full)
            _count(counts["endpoints"], outcome)

        in_file = {values["slug"] for values in models}
        stale_models = [m.pk for m in model_rows.values() if m.active and m.slug not in in_file]
        counts["models"]["deactivated"] = Model.objects.filter(pk__in=stale_models).update(active=False)
        stale_endpoints = [e.pk for key, e in endpoint_rows.items() if e.active and key not in wanted]
        counts["endpoints"]["deactivated"] = Endpoint.objects.filter(pk__in=stale_endpoints).update(active=False)

        transaction.on_commit(catalog_version_bump)

    return CatalogLoadResult(
        providers=len(providers),
        models=len(models),
        endpoints=len(endpoints),
        created=sum(c["created"] for c in counts.values()),
        updated=sum(c["updated"] for c in counts.values()),
        deactivated=sum(c["deactivated"] for c in counts.values()),
        details=counts,
    )


def catalog_version_bump() -> None:
    """Tell every reader of the catalog (the /models cache, routing snapshots) that it changed."""
    cache.set(CATALOG_VERSION_CACHE_KEY, time.time_ns(), timeout=None)
    catalog_cache.invalidate()  # every gateway process's snapshot, at once


def _upsert(model_class: type, row: Any, values: dict[str, Any]) -> tuple[Any, str]:
    if row is None:
        return model_class.objects.create(**values), "created"
    changed = [name for name, value in values.items() if _current(row, name) != _comparable(value)]
    if not changed:
        return row, "unchanged"
    for name in changed:
        setattr(row, name, values[name])
    row.save(update_fields=changed)
    return row, "updated"


def _current(row: Any, name: str) -> Any:
    field_ = row._meta.get_field(name)
    if field_.is_relation:
        return getattr(row, field_.attname)
    return getattr(row, name)


def _comparable(value: Any) -> Any:
    return value.pk if hasattr(value, "_meta") else value


def _count(counts: dict[str, int], outcome: str) -> None:
    if outcome in counts:
        counts[outcome] += 1


# --- validation ------------------------------------------------------------------------------


class _Checker:
    """Collects every problem, each prefixed with where in the file it is."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def keys(self, obj: dict, where: str, required: set[str], optional: set[str]) -> None:
        for name in sorted(required - obj.keys()):
            self.error(f"{where}.{name}", "missing required field")
        for name in sorted(obj.keys() - required - optional):
            self.error(f"{where}.{name}", "unknown field")

    def string(self, obj: dict, name: str, where: str, *, default: str = "", pattern: re.Pattern | None = None,
               nullable: bool = True, max_length: int | None = None) -> str:
        value = obj.get(name)
        if value is None and (nullable or name not in obj):
            return default  # a missing required field is reported once, by keys()
        if not isinstance(value, str) or (not nullable and not value):
            self.error(f"{where}.{name}", "must be a non-empty string" if not nullable else "must be a string")
            return default
        if pattern is not None and value and not pattern.match(value):
            self.error(f"{where}.{name}", f"{value!r} is not valid")
        if max_length is not None and len(value) > max_length:
            self.error(f"{where}.{name}", f"longer than {max_length} characters")
        return value

    def url(self, obj: dict, name: str, where: str) -> str:
        value = self.string(obj, name, where, max_length=300)
        if value and not value.startswith(("https://", "http://")):
            self.error(f"{where}.{name}", f"{value!r} is not an http(s) URL")
        return value

    def boolean(self, obj: dict, name: str, where: str, default: bool) -> bool:
        value = obj.get(name, default)
        if not isinstance(value, bool):
            self.error(f"{where}.{name}", "must be true or false")
            return default
        return value

    def integer(self, obj: dict, name: str, where: str, *, nullable: bool = False, minimum: int = 1,
                default: int | None = None) -> int | None:
        value = obj.get(name, default)
        if value is None and (nullable or name not in obj):
            return None  # a missing required field is reported once, by keys()
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(f"{where}.{name}", "must be an integer" + (" or null" if nullable else ""))
            return None
        if value < minimum:
            self.error(f"{where}.{name}", f"must be at least {minimum}")
        return value

    def choice_list(self, obj: dict, name: str, where: str, allowed: frozenset, *, non_empty: bool = True,
                    default: list | None = None) -> list[str]:
        if name not in obj:
            return list(default or [])  # a missing required field is reported once, by keys()
        value = obj[name]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.error(f"{where}.{name}", "must be a list of strings")
            return []
        if non_empty and not value:
            self.error(f"{where}.{name}", "must not be empty")
        unknown = [item for item in value if item not in allowed]
        if unknown:
            self.error(f"{where}.{name}", f"unknown value(s) {unknown}; allowed: {sorted(allowed)}")
        if len(set(value)) != len(value):
            self.error(f"{where}.{name}", "has duplicates")
        return list(value)

    def price(self, pricing: dict, name: str, where: str, *, per_token: bool) -> int | None:
        value = pricing.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(f"{where}.{name}", f'must be a decimal string such as "2.5", not {value!r}')
            return None
        try:
            nanos = usd_to_nanos(value.strip())
        except MoneyError:
            if _looks_numeric(value):
                unit = "1e-15 USD per token (1e-9 USD per million tokens)" if per_token else "1e-9 USD"
                self.error(f"{where}.{name}", f"{value!r} is finer than {unit}")
            else:
                self.error(f"{where}.{name}", f"{value!r} is not a decimal amount")
            return None
        if nanos < 0:
            self.error(f"{where}.{name}", f"{value!r} is negative")
            return None
        if nanos > MAX_PRICE_NANOS:
            self.error(f"{where}.{name}", f"{value!r} is implausibly large (the file's prices are USD per million tokens)")
            return None
        return nanos


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


_PROVIDER_REQUIRED = {"slug", "name"}
_PROVIDER_OPTIONAL = {
    "base_url", "api_key_env", "dialect", "supports_cancellation", "privacy_policy_url", "terms_of_service_url",
    "status_page_url", "headquarters", "datacenters", "data_policy",
}
_POLICY_KEYS = {"trains_on_data", "retains_prompts", "retention_days", "zdr"}
_MODEL_REQUIRED = {"id", "name", "created", "context_length", "input_modalities", "output_modalities", "tokenizer",
                   "endpoints"}
_MODEL_OPTIONAL = {"canonical_slug", "description", "hugging_face_id", "max_completion_tokens", "instruct_type",
                   "default_parameters", "reasoning", "knowledge_cutoff", "is_moderated"}
_ENDPOINT_REQUIRED = {"provider", "upstream_model_id", "pricing", "context_length", "supported_parameters"}
_ENDPOINT_OPTIONAL = {"tag", "max_completion_tokens", "max_prompt_tokens", "quantization", "input_modalities",
                      "output_modalities", "supports_implicit_caching", "status"}
_PRICING_KEYS = set(TOKEN_PRICE_FIELDS) | set(UNIT_PRICE_FIELDS)


def _validate(data: Any) -> tuple[list[dict], list[dict], list[tuple[str, str, dict]]]:
    check = _Checker()
    if not isinstance(data, dict):
        raise CatalogError(["catalog: must be a JSON object with \"providers\" and \"models\""])
    check.keys(data, "catalog", {"providers", "models"}, {"version"})
    if data.get("version", CATALOG_FORMAT_VERSION) != CATALOG_FORMAT_VERSION:
        check.error("catalog.version", f"unsupported format version {data.get('version')!r} (expected 1)")
    raw_providers = data.get("providers", [])
    raw_models = data.get("models", [])
    if not isinstance(raw_providers, list):
        check.error("providers", "must be a list")
        raw_providers = []
    if not isinstance(raw_models, list):
        check.error("models", "must be a list")
        raw_models = []

    providers: list[dict] = []
    for index, raw in enumerate(raw_providers):
        values = _provider_values(check, raw, f"providers[{index}]")
        if values is not None:
            providers.append(values)
    slugs = [p["slug"] for p in providers]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        check.error("providers", f"duplicate provider slug {slug!r}")
    known_providers = set(slugs)

    models: list[dict] = []
    endpoints: list[tuple[str, str, dict]] = []
    for index, raw in enumerate(raw_models):
        parsed = _model_values(check, raw, f"models[{index}]", known_providers)
        if parsed is not None:
            values, model_endpoints = parsed
            models.append(values)
            endpoints.extend((values["slug"], provider, ep) for provider, ep in model_endpoints)
    ids = [m["slug"] for m in models]
    for slug in sorted({s for s in ids if ids.count(s) > 1}):
        check.error("models", f"duplicate model id {slug!r}")

    if check.errors:
        raise CatalogError(check.errors)
    return providers, models, endpoints


def _provider_values(check: _Checker, raw: Any, where: str) -> dict | None:
    if not isinstance(raw, dict):
        check.error(where, "must be an object")
        return None
    slug = check.string(raw, "slug", where, pattern=_SLUG_RE, nullable=False, max_length=64)
    where = f"{where}({slug})" if slug else where
    check.keys(raw, where, _PROVIDER_REQUIRED, _PROVIDER_OPTIONAL)
    values: dict[str, Any] = {
        "slug": slug,
        "name": check.string(raw, "name", where, nullable=False, max_length=120),
        "base_url": check.url(raw, "base_url", where),
        "api_key_env": check.string(raw, "api_key_env", where, pattern=_ENV_RE, max_length=80),
        "dialect": check.string(raw, "dialect", where, default="openai"),
        "supports_cancellation": check.boolean(raw, "supports_cancellation", where, True),
        "privacy_policy_url": check.url(raw, "privacy_policy_url", where),
        "terms_of_service_url": check.url(raw, "terms_of_service_url", where),
        "status_page_url": check.url(raw, "status_page_url", where),
        "headquarters": check.string(raw, "headquarters", where, pattern=_COUNTRY_RE),
    }
    if values["dialect"] not in DIALECTS:
        check.error(f"{where}.dialect", f"{values['dialect']!r} is not one of {sorted(DIALECTS)}")
    datacenters = raw.get("datacenters", [])
    if not isinstance(datacenters, list) or not all(isinstance(c, str) and _COUNTRY_RE.match(c) for c in datacenters):
        check.error(f"{where}.datacenters", "must be a list of ISO 3166-1 alpha-2 codes such as \"US\"")
        datacenters = []
    values["datacenters"] = list(datacenters)

    policy = raw.get("data_policy", {})
    if not isinstance(policy, dict):
        check.error(f"{where}.data_policy", "must be an object")
        policy = {}
    check.keys(policy, f"{where}.data_policy", set(), _POLICY_KEYS)
    # OpenRouter assumes an unknown policy retains and trains.
    values["trains_on_data"] = check.boolean(policy, "trains_on_data", f"{where}.data_policy", True)
    values["retains_prompts"] = check.boolean(policy, "retains_prompts", f"{where}.data_policy", True)
    values["retention_days"] = check.integer(policy, "retention_days", f"{where}.data_policy", nullable=True, minimum=0)
    values["zdr"] = check.boolean(policy, "zdr", f"{where}.data_policy", False)
    if values["zdr"] and (values["retains_prompts"] or values["trains_on_data"]):
        check.error(f"{where}.data_policy.zdr", "a zero-data-retention provider cannot retain prompts or train on them")
    return values


def _model_values(check: _Checker, raw: Any, where: str, known_providers: set[str]) -> tuple[dict, list] | None:
    if not isinstance(raw, dict):
        check.error(where, "must be an object")
        return None
    slug = check.string(raw, "id", where, pattern=_MODEL_ID_RE, nullable=False, max_length=160)
    where = f"{where}({slug})" if slug else where
    check.keys(raw, where, _MODEL_REQUIRED, _MODEL_OPTIONAL)
    base_slug = slug.split(":", 1)[0]
    values: dict[str, Any] = {
        "slug": slug,
        "canonical_slug": check.string(raw, "canonical_slug", where, default=base_slug, pattern=_MODEL_ID_RE,
                                       max_length=160) or base_slug,
        "author": base_slug.split("/", 1)[0],
        "name": check.string(raw, "name", where, nullable=False, max_length=200),
        "description": check.string(raw, "description", where),
        "hugging_face_id": check.string(raw, "hugging_face_id", where, max_length=200),
        "created": check.integer(raw, "created", where, minimum=0),
        "context_length": check.integer(raw, "context_length", where),
        "max_completion_tokens": check.integer(raw, "max_completion_tokens", where, nullable=True),
        "input_modalities": check.choice_list(raw, "input_modalities", where, INPUT_MODALITIES),
        "output_modalities": check.choice_list(raw, "output_modalities", where, OUTPUT_MODALITIES),
        "tokenizer": check.string(raw, "tokenizer", where, nullable=False),
        "instruct_type": check.string(raw, "instruct_type", where) or None,
        "knowledge_cutoff": check.string(raw, "knowledge_cutoff", where, pattern=_DATE_RE) or None,
        "is_moderated": check.boolean(raw, "is_moderated", where, False),
        "default_parameters": _default_parameters(check, raw.get("default_parameters"), f"{where}.default_parameters"),
        "reasoning": _reasoning(check, raw.get("reasoning"), f"{where}.reasoning"),
    }
    if values["tokenizer"] and values["tokenizer"] not in TOKENIZERS:
        check.error(f"{where}.tokenizer", f"{values['tokenizer']!r} is not one of {sorted(TOKENIZERS)}")
    if values["instruct_type"] is not None and values["instruct_type"] not in INSTRUCT_TYPES:
        check.error(f"{where}.instruct_type", f"{values['instruct_type']!r} is not one of {sorted(INSTRUCT_TYPES)}")

    raw_endpoints = raw.get("endpoints", [])
    if not isinstance(raw_endpoints, list) or not raw_endpoints:
        check.error(f"{where}.endpoints", "must be a non-empty list (a model needs at least one provider)")
        raw_endpoints = []
    endpoints = []
    for index, raw_endpoint in enumerate(raw_endpoints):
        parsed = _endpoint_values(check, raw_endpoint, f"{where}.endpoints[{index}]", values, known_providers)
        if parsed is not None:
            endpoints.append(parsed)
    tags = [ep["tag"] for _, ep in endpoints]
    for tag in sorted({t for t in tags if tags.count(t) > 1}):
        check.error(f"{where}.endpoints", f"duplicate endpoint tag {tag!r} (give the second one a variant: \"{tag}/...\")")
    return values, endpoints


def _endpoint_values(check: _Checker, raw: Any, where: str, model: dict, known_providers: set[str]) -> tuple | None:
    if not isinstance(raw, dict):
        check.error(where, "must be an object")
        return None
    check.keys(raw, where, _ENDPOINT_REQUIRED, _ENDPOINT_OPTIONAL)
    provider = check.string(raw, "provider", where, nullable=False)
    if provider and provider not in known_providers:
        check.error(f"{where}.provider", f"unknown provider {provider!r} (not in \"providers\")")
    tag = check.string(raw, "tag", where, default=provider, pattern=_TAG_RE, max_length=120) or provider
    if provider and tag and tag != provider and not tag.startswith(provider + "/"):
        check.error(f"{where}.tag", f"{tag!r} must be {provider!r} or start with {provider + '/'!r}")
    values: dict[str, Any] = {
        "tag": tag,
        "upstream_model_id": check.string(raw, "upstream_model_id", where, nullable=False, max_length=200),
        "context_length": check.integer(raw, "context_length", where),
        "max_completion_tokens": check.integer(raw, "max_completion_tokens", where, nullable=True),
        "max_prompt_tokens": check.integer(raw, "max_prompt_tokens", where, nullable=True),
        "quantization": check.string(raw, "quantization", where) or None,
        "supported_parameters": check.choice_list(raw, "supported_parameters", where, PARAMETERS, non_empty=False),
        "input_modalities": check.choice_list(raw, "input_modalities", where, INPUT_MODALITIES,
                                              default=model["input_modalities"]),
        "output_modalities": check.choice_list(raw, "output_modalities", where, OUTPUT_MODALITIES,
                                               default=model["output_modalities"]),
        "supports_implicit_caching": check.boolean(raw, "supports_implicit_caching", where, False),
        "status": check.integer(raw, "status", where, minimum=-(2**31), default=0),
    }
    if values["quantization"] is not None and values["quantization"] not in QUANTIZATIONS:
        check.error(f"{where}.quantization", f"{values['quantization']!r} is not one of {sorted(QUANTIZATIONS)}")
    if values["status"] is not None and values["status"] not in ENDPOINT_STATUSES:
        check.error(f"{where}.status", f"{values['status']!r} is not one of {sorted(ENDPOINT_STATUSES)}")

    pricing = raw.get("pricing")
    if not isinstance(pricing, dict):
        if "pricing" in raw:
            check.error(f"{where}.pricing", "must be an object")
        pricing = {}
    else:
        check.keys(pricing, f"{where}.pricing", {"prompt", "completion"}, _PRICING_KEYS - {"prompt", "completion"})
    for name, column in TOKEN_PRICE_FIELDS.items():
        values[column] = check.price(pricing, name, f"{where}.pricing", per_token=True)
    for name, column in UNIT_PRICE_FIELDS.items():
        values[column] = check.price(pricing, name, f"{where}.pricing", per_token=False) or 0
    for column in ("price_prompt", "price_completion"):
        values[column] = values[column] or 0
    return provider, values


def _default_parameters(check: _Checker, value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        check.error(where, "must be an object or null")
        return None
    for name, item in value.items():
        if name not in DEFAULT_PARAMETER_KEYS:
            check.error(f"{where}.{name}", f"unknown default parameter; allowed: {sorted(DEFAULT_PARAMETER_KEYS)}")
        elif item is not None and (isinstance(item, bool) or not isinstance(item, int | float)):
            check.error(f"{where}.{name}", "must be a number or null")
        elif name == "top_k" and item is not None and not isinstance(item, int):
            check.error(f"{where}.{name}", "must be an integer or null")
    return value


def _reasoning(check: _Checker, value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        check.error(where, "must be an object or null")
        return None
    check.keys(value, where, {"mandatory"}, {"default_enabled", "default_effort", "supported_efforts", "supports_max_tokens"})
    for name in ("mandatory", "default_enabled", "supports_max_tokens"):
        if name in value and not isinstance(value[name], bool):
            check.error(f"{where}.{name}", "must be true or false")
    efforts = value.get("supported_efforts")
    if efforts is not None and (not isinstance(efforts, list) or any(e not in REASONING_EFFORTS for e in efforts)):
        check.error(f"{where}.supported_efforts", f"must be null or a list of {sorted(REASONING_EFFORTS)}")
    if value.get("default_effort") is not None and value["default_effort"] not in REASONING_EFFORTS:
        check.error(f"{where}.default_effort", f"must be one of {sorted(REASONING_EFFORTS)}")
    return value


def catalog_outage_set(*, provider: Provider | None = None, endpoint: Endpoint | None = None, down: bool) -> None:
    """Declare a provider (all its endpoints) or one endpoint down, or up again (the staff console).

    Routing leaves it out of the catalog snapshot it plans from, and the endpoints API shows its
    status as down; every gateway process forgets its snapshot at once (through Redis; without it
    there is one process), and the catalog version is bumped for readers that watch it.
    """
    row = provider if provider is not None else endpoint
    if row is None or (provider is not None and endpoint is not None):
        raise ValueError("name a provider or an endpoint")
    type(row).objects.filter(id=row.id).update(outage=down)
    row.outage = down
    transaction.on_commit(catalog_version_bump)
