"""The hot path's in-memory copy of the catalog.

Built from the database in a worker thread, kept for
``GATEWAY_CATALOG_CACHE_SECONDS``, and rebuilt sooner when the catalog changes (``invalidate``:
this process and, through Redis, every other at once) or when a model id is not found in a copy
more than two seconds old. Each model's endpoints are pre-sorted cheapest first.

An endpoint also carries what ``routing.selection`` filters on: its provider's data
policy (an unknown policy is assumed to train and retain, as OpenRouter does), its
quantization (``None`` for closed models) and its service tier (``"priority"`` or
``"flex"`` when the tag ends so, e.g. ``openai/priority``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from django.conf import settings

from openrouter_site.process_cache import InvalidatingCache


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    id: int
    tag: str
    provider_slug: str
    provider_name: str
    upstream_model_id: str
    base_url: str
    api_key: str
    is_simulated: bool
    price_prompt: int  # nano-dollars per million tokens
    price_completion: int
    price_request: int  # nano-dollars per request
    price_cache_read: int | None
    price_cache_write: int | None
    context_length: int
    max_completion_tokens: int | None
    supported_parameters: frozenset[str]
    supports_cancellation: bool
    model_slug: str = ""
    price_image: int = 0  # nano-dollars per image
    quantization: str | None = None
    trains_on_data: bool = True
    retains_prompts: bool = True
    zdr: bool = False
    service_tier: str | None = None
    dialect: str = "openai"
    input_modalities: frozenset[str] = frozenset({"text"})
    real_base_url: str = ""  # the provider's own API, used for BYOK requests when real upstreams are on
    output_modalities: frozenset[str] = frozenset({"text"})  # {"embeddings"}: an embedding model's endpoint

    @property
    def is_free(self) -> bool:
        return self.price_prompt == 0 and self.price_completion == 0 and self.price_request == 0


@dataclass(frozen=True, slots=True)
class ModelEntry:
    slug: str
    name: str
    context_length: int
    max_completion_tokens: int | None
    endpoints: tuple[EndpointEntry, ...]
    input_modalities: frozenset[str] = frozenset({"text"})


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    models: dict[str, ModelEntry]
    built_at: float
    version: object


SERVICE_TIERS = ("priority", "flex")


def service_tier(tag: str) -> str | None:
    """``"priority"`` for ``openai/priority``, ``"flex"`` for ``openai/flex``, else ``None``."""
    _, slash, variant = tag.rpartition("/")
    return variant if slash and variant in SERVICE_TIERS else None


def provider_target(*, slug: str, base_url: str, api_key_env: str) -> tuple[str, str, bool]:
    """Where a provider's requests go: its real API when its key is in the environment, else the simulator."""
    api_key = os.environ.get(api_key_env, "") if api_key_env else ""
    if api_key and base_url:
        return base_url.rstrip("/"), api_key, False
    return f"{settings.PROVIDER_SIMULATOR_URL}/p/{slug}/v1", "simulator", True


def _build() -> CatalogSnapshot:
    from django.core.cache import cache

    from .models import Endpoint, Model

    version = cache.get("catalog:version")
    models: dict[str, ModelEntry] = {}
    endpoints_by_model: dict[int, list[EndpointEntry]] = {}
    rows = Endpoint.objects.filter(
        active=True, model__active=True, outage=False, provider__outage=False  # staff-declared outages: down
    ).select_related("provider", "model")
    for row in rows:
        base_url, api_key, simulated = provider_target(
            slug=row.provider.slug, base_url=row.provider.base_url, api_key_env=row.provider.api_key_env
        )
        endpoints_by_model.setdefault(row.model_id, []).append(
            EndpointEntry(
                id=row.id,
                tag=row.tag,
                provider_slug=row.provider.slug,
                provider_name=row.provider.name,
                upstream_model_id=row.upstream_model_id,
                base_url=base_url,
                api_key=api_key,
                is_simulated=simulated,
                price_prompt=row.price_prompt,
                price_completion=row.price_completion,
                price_request=row.price_request,
                price_cache_read=row.price_cache_read,
                price_cache_write=row.price_cache_write,
                context_length=row.context_length,
                max_completion_tokens=row.max_completion_tokens,
                supported_parameters=frozenset(row.supported_parameters or ()),
                supports_cancellation=row.provider.supports_cancellation,
                model_slug=row.model.slug,
                price_image=row.price_image,
                quantization=row.quantization or None,
                trains_on_data=row.provider.trains_on_data,
                retains_prompts=row.provider.retains_prompts,
                zdr=row.provider.zdr,
                service_tier=service_tier(row.tag),
                dialect=row.provider.dialect or "openai",
                input_modalities=frozenset(row.input_modalities or row.model.input_modalities or ("text",)),
                real_base_url=(row.provider.base_url or "").rstrip("/"),
                output_modalities=frozenset(row.output_modalities or row.model.output_modalities or ("text",)),
            )
        )
    for model in Model.objects.filter(active=True):
        endpoints = sorted(
            endpoints_by_model.get(model.id, []),
            key=lambda e: (e.price_prompt + e.price_completion, e.price_request, e.tag),
        )
        models[model.slug] = ModelEntry(
            slug=model.slug,
            name=model.name,
            context_length=model.context_length,
            max_completion_tokens=model.max_completion_tokens,
            endpoints=tuple(endpoints),
            input_modalities=frozenset(model.input_modalities or ("text",)),
        )
    return CatalogSnapshot(models=models, built_at=time.monotonic(), version=version)


def catalog_read() -> CatalogSnapshot:
    """The catalog as routing sees it, read now (synchronous: for Django views, never the hot path)."""
    return _build()


SNAPSHOT = "snapshot"  # the one entry
# Built in a worker thread, once however many requests miss at the same time; forgotten at once here
# and, through Redis, in every other process when the catalog changes (an outage declared by staff).
snapshots: InvalidatingCache[str, CatalogSnapshot] = InvalidatingCache(
    name="catalog", load=lambda _key: _build(), ttl=lambda: settings.GATEWAY_CATALOG_CACHE_SECONDS, parse_key=str
)
builds = snapshots.flights  # its loads are the builds


async def catalog() -> CatalogSnapshot:
    return await snapshots.get(SNAPSHOT)


async def model_lookup(slug: str) -> ModelEntry | None:
    snapshot = await catalog()
    entry = snapshot.models.get(slug)
    if entry is None and time.monotonic() - snapshot.built_at > 2:
        snapshot = await refresh(stale=snapshot)
        entry = snapshot.models.get(slug)
    return entry


async def refresh(stale: CatalogSnapshot | None = None) -> CatalogSnapshot:
    """Rebuild (once, however many requests ask at the same time): always, or only if the snapshot
    held is still ``stale`` (a burst of unknown model ids rebuilds once, not once each)."""
    held = snapshots.entries.get(SNAPSHOT)
    if stale is None or (held is not None and held[1] is stale):
        snapshots.forget(SNAPSHOT)
    return await snapshots.get(SNAPSHOT)


def invalidate() -> None:
    """The catalog changed: forget the snapshot here and in every other process."""
    snapshots.invalidate(SNAPSHOT)
