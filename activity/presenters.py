"""Generations as OpenRouter renders them."""

from __future__ import annotations

from billing.money import nanos_to_usd_number

from .models import Generation


def generation_body(g: Generation) -> dict:
    return {
        "id": g.id,
        "upstream_id": g.upstream_id or None,
        "request_id": None,
        "session_id": g.session_id or None,
        "total_cost": nanos_to_usd_number(g.cost),
        "usage": nanos_to_usd_number(g.cost),
        "cache_discount": nanos_to_usd_number(g.cache_discount) if g.cache_discount else None,
        "upstream_inference_cost": nanos_to_usd_number(g.upstream_cost) if g.is_byok else None,
        "is_byok": g.is_byok,
        "created_at": g.created_at.isoformat(),
        "model": g.model,
        "app_id": None,
        "streamed": g.streamed,
        "cancelled": g.cancelled,
        "provider_name": g.provider_name or None,
        "latency": g.latency_ms,
        "moderation_latency": None,
        "generation_time": g.generation_time_ms,
        "finish_reason": g.finish_reason,
        "native_finish_reason": g.native_finish_reason,
        "service_tier": None,
        "tokens_prompt": g.tokens_prompt,
        "tokens_completion": g.tokens_completion,
        "native_tokens_prompt": g.tokens_prompt,
        "native_tokens_completion": g.tokens_completion,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": g.tokens_reasoning,
        "native_tokens_cached": g.tokens_cached,
        "num_media_prompt": None,
        "num_input_audio_prompt": None,
        "num_media_completion": None,
        "num_search_results": None,
        "num_fetches": None,
        "web_search_engine": None,
        "origin": g.http_referer or "",
        "external_user": g.external_user or None,
        "api_type": g.api_type,
        "preset_id": None,
        "router": g.router,
        "provider_responses": g.provider_responses or [],
        "user_agent": g.user_agent or None,
        "http_referer": g.http_referer or None,
        "app_title": g.app_title or None,
        "data_region": "global",
        "workspace_id": None,
        "response_cache_source_id": None,
    }
