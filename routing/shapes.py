"""OpenRouter's response shapes: ids, finish reasons, usage, chunks."""

from __future__ import annotations

import secrets
import string
import time

from billing.metering import Cost, Usage
from billing.money import nanos_to_usd_number

_ALNUM = string.ascii_letters + string.digits

FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "error": "error",
}


def generation_id() -> str:
    return f"gen-{int(time.time())}-{''.join([_ALNUM[b % 62] for b in secrets.token_bytes(20)])}"


def normalize_finish_reason(native: str | None) -> str | None:
    if native is None or native == "":
        return None
    return FINISH_REASONS.get(str(native).lower(), "stop")


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_provider(raw) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    if not isinstance(completion_details, dict):
        completion_details = {}
    return Usage(
        prompt_tokens=_int(raw.get("prompt_tokens")),
        completion_tokens=_int(raw.get("completion_tokens")),
        cached_tokens=_int(prompt_details.get("cached_tokens")),
        cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
    )


def usage_body(usage: Usage, cost: Cost, charged: int, *, is_byok: bool = False) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "cost": nanos_to_usd_number(charged),
        "is_byok": is_byok,
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "audio_tokens": 0,
            "video_tokens": 0,
        },
        "cost_details": {
            "upstream_inference_cost": nanos_to_usd_number(cost.total),
            "upstream_inference_prompt_cost": nanos_to_usd_number(cost.prompt),
            "upstream_inference_completions_cost": nanos_to_usd_number(cost.completion),
        },
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "image_tokens": 0,
            "audio_tokens": 0,
        },
    }
