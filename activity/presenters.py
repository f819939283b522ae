"""Generations as OpenRouter renders them."""

from __future__ import annotations

from billing.money import nanos_to_display, nanos_to_usd_number, nanos_to_usd_string

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


def log_row(g: Generation) -> dict[str, str | bool]:
    """One request-log row as ready-made strings (the log renders 50 of these per page view and poll)."""
    speed = ""
    if g.generation_time_ms and g.tokens_completion:
        speed = f"{g.tokens_completion * 1000 // g.generation_time_ms} tok/s"
    return {
        "id": g.id,
        "time": g.created_at.strftime("%b %d %H:%M:%S"),
        "model": g.model,
        "provider": g.provider_name or "—",
        "key": g.api_key.name if g.api_key_id and g.api_key else "",
        "app": g.app_title,
        "tokens": f"{g.tokens_prompt} / {g.tokens_completion}",
        "cost": nanos_to_display(g.cost, places=2 if abs(g.cost) >= 10**9 else 6),
        "cost_exact": nanos_to_usd_string(g.cost),
        "latency": f"{g.latency_ms} ms" if g.latency_ms is not None else "",
        "speed": speed,
        "finish": g.finish_reason or "",
        "error": g.finish_reason == "error",
        "streamed": g.streamed,
        "cancelled": g.cancelled,
        "byok": g.is_byok,
    }
