"""Provider adapters: the OpenAI chat dialect in, each provider's own dialect on the wire.

``adapter_for(dialect)`` (in ``registry``) gives the adapter for ``"openai"``, ``"anthropic"`` or
``"google"``. Every adapter turns an OpenAI chat request into an ``UpstreamRequest`` and the
provider's answer (a JSON body, an SSE stream, an error) back into OpenAI shapes. Nothing here
imports Django, so the adapters load and test on their own.
"""

from .base import ProviderAdapter, StreamTranslator, TranslationError, UpstreamRequest
from .registry import adapter_for

__all__ = ["ProviderAdapter", "StreamTranslator", "TranslationError", "UpstreamRequest", "adapter_for"]
