"""What a request costs: its worst case before it runs, and its real cost after.

Prices come from the endpoint that served the request; token counts are the ones
the provider reported. All arithmetic goes through billing.money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from . import money

TRAINING_DISCOUNT_PERCENT = Decimal(1)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    total: int
    prompt: int
    completion: int
    request: int


def usage_cost(endpoint, usage: Usage, *, training_discount: bool = False) -> Cost:
    """Cost in nano-dollars of ``usage`` at ``endpoint``'s prices (reasoning tokens are output tokens)."""
    cached = min(usage.cached_tokens, usage.prompt_tokens) if endpoint.price_cache_read is not None else 0
    cache_write = (
        min(usage.cache_write_tokens, usage.prompt_tokens - cached) if endpoint.price_cache_write is not None else 0
    )
    uncached = usage.prompt_tokens - cached - cache_write
    prompt = money.tokens_cost(uncached, endpoint.price_prompt)
    if cached:
        prompt += money.tokens_cost(cached, endpoint.price_cache_read)
    if cache_write:
        prompt += money.tokens_cost(cache_write, endpoint.price_cache_write)
    completion = money.tokens_cost(usage.completion_tokens, endpoint.price_completion)
    request = endpoint.price_request
    total = prompt + completion + request
    if training_discount:
        total = money.apply_discount(total, TRAINING_DISCOUNT_PERCENT)
    return Cost(total=total, prompt=prompt, completion=completion, request=request)


def worst_case_cost(endpoint, *, prompt_tokens: int, max_completion_tokens: int) -> int:
    """The most a request can cost: every prompt token uncached plus every allowed output token."""
    prompt_price = max(endpoint.price_prompt, endpoint.price_cache_write or 0)
    return (
        money.tokens_cost_ceiling(prompt_tokens, prompt_price)
        + money.tokens_cost_ceiling(max_completion_tokens, endpoint.price_completion)
        + endpoint.price_request
    )
