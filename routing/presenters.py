"""Catalog rows -> OpenRouter's JSON shapes (``Model``, ``PublicEndpoint``, providers).

Inputs are ``Model`` rows from ``routing.selectors`` (they carry ``active_endpoints``). Prices
leave as OpenRouter's strings of USD per token (or per request / per image), converted only by
``billing.money``. Uptime, latency and throughput come from live traffic (``routing.stats``)
and stay null for an endpoint without measurements.
"""

from __future__ import annotations

from typing import Any

from billing.money import nanos_to_price_string, per_million_nanos_to_price_string
from routing.models import Endpoint, Model, Provider
from routing.selectors import model_cheapest_endpoint, model_supported_parameters
from routing.stats import EndpointStats, endpoint_stats

API_PREFIX = "/api/v1"


def _unit_price(nanos: int) -> str:
    return nanos_to_price_string(nanos)


def pricing_dict(endpoint: Endpoint | None) -> dict[str, str]:
    """``PublicPricing``: prompt and completion always; the others only when the endpoint sets them."""
    if endpoint is None:
        return {"prompt": "0", "completion": "0"}
    pricing = {
        "prompt": per_million_nanos_to_price_string(endpoint.price_prompt),
        "completion": per_million_nanos_to_price_string(endpoint.price_completion),
    }
    if endpoint.price_request:
        pricing["request"] = _unit_price(endpoint.price_request)
    if endpoint.price_image:
        pricing["image"] = _unit_price(endpoint.price_image)
    if endpoint.price_internal_reasoning is not None:
        pricing["internal_reasoning"] = per_million_nanos_to_price_string(endpoint.price_internal_reasoning)
    if endpoint.price_cache_read is not None:
        pricing["input_cache_read"] = per_million_nanos_to_price_string(endpoint.price_cache_read)
    if endpoint.price_cache_write is not None:
        pricing["input_cache_write"] = per_million_nanos_to_price_string(endpoint.price_cache_write)
    return pricing


def architecture_dict(model: Model) -> dict[str, Any]:
    return {
        "modality": "+".join(model.input_modalities) + "->" + "+".join(model.output_modalities),
        "input_modalities": list(model.input_modalities),
        "output_modalities": list(model.output_modalities),
        "tokenizer": model.tokenizer,
        "instruct_type": model.instruct_type,
    }


def model_dict(model: Model) -> dict[str, Any]:
    """OpenRouter's ``Model``; its pricing is its cheapest active endpoint's."""
    data: dict[str, Any] = {
        "id": model.slug,
        "canonical_slug": model.canonical_slug,
        "hugging_face_id": model.hugging_face_id or None,
        "name": model.name,
        "created": model.created,
        "description": model.description,
        "context_length": model.context_length,
        "architecture": architecture_dict(model),
        "pricing": pricing_dict(model_cheapest_endpoint(model)),
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": model.max_completion_tokens,
            "is_moderated": model.is_moderated,
        },
        "per_request_limits": None,
        "supported_parameters": model_supported_parameters(model),
        "default_parameters": model.default_parameters,
        "supported_voices": None,
        "knowledge_cutoff": model.knowledge_cutoff,
        "expiration_date": None,
        "links": {"details": f"{API_PREFIX}/models/{model.slug}/endpoints"},
    }
    if model.reasoning is not None:
        data["reasoning"] = model.reasoning
    return data


# The endpoint status shown while support staff have declared an outage (OpenRouter's lowest status).
ENDPOINT_STATUS_DOWN = -10


def endpoint_dict(model: Model, endpoint: Endpoint, stats: EndpointStats | None = None) -> dict[str, Any]:
    """OpenRouter's ``PublicEndpoint``. Uptime (%) and performance (TTFT ms, tokens/s) are null until measured."""
    return {
        "name": f"{endpoint.provider.name} | {model.canonical_slug}",
        "model_id": model.canonical_slug,
        "model_name": model.name,
        "context_length": endpoint.context_length,
        "pricing": pricing_dict(endpoint),
        "provider_name": endpoint.provider.name,
        "tag": endpoint.tag,
        "quantization": endpoint.quantization,
        "max_completion_tokens": endpoint.max_completion_tokens,
        "max_prompt_tokens": endpoint.max_prompt_tokens,
        "supported_parameters": list(endpoint.supported_parameters),
        "status": ENDPOINT_STATUS_DOWN if endpoint.outage or endpoint.provider.outage else endpoint.status,
        "uptime_last_30m": stats.uptime_30m if stats else None,
        "uptime_last_5m": stats.uptime_5m if stats else None,
        "uptime_last_1d": stats.uptime_1d if stats else None,
        "supports_implicit_caching": endpoint.supports_implicit_caching,
        "latency_last_30m": stats.latency_30m.as_dict() if stats and stats.latency_30m else None,
        "throughput_last_30m": stats.throughput_30m.as_dict() if stats and stats.throughput_30m else None,
        # Fields the official SDK (1.3.84) requires beyond the bundled spec.
        "native_tools": {},
        "service_tier": None,
        "supports_diarization": False,
        "supports_tool_choice": _tool_choice_support(endpoint),
    }


def _tool_choice_support(endpoint: Endpoint) -> dict[str, bool]:
    tools = "tools" in (endpoint.supported_parameters or [])
    choice = tools and "tool_choice" in (endpoint.supported_parameters or [])
    return {"auto": tools, "none": tools, "required": choice, "function": choice}


def model_endpoints_dict(model: Model) -> dict[str, Any]:
    """OpenRouter's ``ListEndpointsResponse``."""
    stats = endpoint_stats([endpoint.id for endpoint in model.active_endpoints])
    return {
        "id": model.slug,
        "name": model.name,
        "created": model.created,
        "description": model.description,
        "architecture": architecture_dict(model),
        "endpoints": [endpoint_dict(model, endpoint, stats.get(endpoint.id)) for endpoint in model.active_endpoints],
    }


def provider_dict(provider: Provider) -> dict[str, Any]:
    return {
        "name": provider.name,
        "slug": provider.slug,
        "privacy_policy_url": provider.privacy_policy_url or None,
        "terms_of_service_url": provider.terms_of_service_url or None,
        "status_page_url": provider.status_page_url or None,
        "headquarters": provider.headquarters or None,
        "datacenters": list(provider.datacenters) if provider.datacenters else None,
    }
