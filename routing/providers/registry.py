"""Which adapter speaks a provider's dialect."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import ProviderAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "google": GeminiAdapter(),
}


def adapter_for(dialect: str) -> ProviderAdapter:
    """The (stateless, shared) adapter for ``"openai"``, ``"anthropic"`` or ``"google"``."""
    try:
        return ADAPTERS[dialect]
    except KeyError:
        raise ValueError(f"unknown provider dialect {dialect!r}; known: {', '.join(ADAPTERS)}") from None
