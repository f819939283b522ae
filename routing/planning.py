"""From a validated request to the ordered list of attempts the gateway will make.

Resolves the model id (static ids, dynamic variants such as ``:nitro``, the routers
``openrouter/auto`` and ``openrouter/free``, the ``models`` fallback list), filters
endpoints by the modalities the request needs, asks ``routing.selection`` for the
order (provider preferences, price-weighted load balancing, health, sticky
routing), then puts bring-your-own-key attempts where OpenRouter puts them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from django.conf import settings

from accounts.keycache import AccountPrivacy, KeyInfo, key_info
from openrouter_site.errors import BadRequest

from .catalog_cache import CatalogSnapshot, EndpointEntry, ModelEntry, catalog, model_lookup
from .guardrails import guardrails_apply
from .plugins import enabled_plugin
from .routers import auto_route, free_route, has_images
from .selection import (
    DEFAULT_PREFERENCES,
    ConstraintFiltered,
    ProviderPreferences,
    model_usable,
    plan_route,
    preferences_parse,
)
from .stats import health_snapshot
from .sticky import caches_prompts, conversation_key, sticky_get

# ":free" and ":extended" are static: they exist only as their own catalog ids.
DYNAMIC_VARIANTS = frozenset({"nitro", "floor", "exacto", "online", "thinking"})
AUTO_ROUTERS = frozenset({"openrouter/auto", "openrouter/auto-beta"})
EMBEDDINGS_ONLY = frozenset({"embeddings"})  # an embedding model's output: it writes no text


@dataclass(slots=True)
class Attempt:
    endpoint: EndpointEntry
    model: ModelEntry
    base_url: str
    api_key: str
    is_byok: bool = False
    dropped: frozenset[str] = frozenset()


@dataclass(slots=True)
class Plan:
    attempts: list[Attempt]
    router: str | None = None
    variant: str | None = None
    free: bool = False
    web: dict | None = None
    sticky_key: str | None = None
    byok_providers: frozenset[str] = field(default_factory=frozenset)


async def _resolve(slug: str) -> tuple[ModelEntry | None, str | None]:
    model = await model_lookup(slug)
    if model is not None:
        static_variant = slug.rpartition(":")[2] if ":" in slug else None
        return model, (static_variant if static_variant in ("free", "thinking", "extended") else None)
    base, separator, suffix = slug.rpartition(":")
    if separator and suffix in DYNAMIC_VARIANTS:
        model = await model_lookup(base)
        if model is not None:
            return model, suffix
    return None, None


def _primary_slugs(body: dict, requested: str, snapshot) -> tuple[list[str], str | None]:
    if requested in AUTO_ROUTERS:
        _category, slugs = auto_route(body, available=snapshot.models.keys())
        return slugs, requested
    if requested == "openrouter/free":
        return free_route(body, list(snapshot.models.values())), requested
    return [requested], None


def _serves(endpoint: EndpointEntry, kind: str) -> bool:
    """Whether an endpoint can answer a request of this kind: embeddings come from an embedding model (over
    OpenAI's wire format), every other kind from a model that writes (not an embedding-only one)."""
    if kind == "embeddings":
        return "embeddings" in endpoint.output_modalities and endpoint.dialect == "openai"
    return endpoint.output_modalities != EMBEDDINGS_ONLY


def _with_modalities(models: list[ModelEntry], body: dict, kind: str) -> list[ModelEntry]:
    """Only endpoints that can take the request: images need image input; legacy completions need OpenAI;
    embeddings need an embedding model, and nothing else does."""
    if kind == "embeddings" or any(not _serves(e, kind) for m in models for e in m.endpoints):
        models = _serving(models, kind)
        if kind == "embeddings":
            return models
    needs_images = kind == "chat" and has_images(body)
    if not needs_images and kind == "chat":
        return models
    kept = []
    for model in models:
        endpoints = tuple(
            e
            for e in model.endpoints
            if (not needs_images or "image" in e.input_modalities) and (kind == "chat" or e.dialect == "openai")
        )
        if endpoints:
            kept.append(dataclasses.replace(model, endpoints=endpoints))
    if not kept:
        field_name = "input_modalities" if needs_images else "api_type"
        detail = "no endpoint accepts image input" if needs_images else "no endpoint serves legacy completions"
        raise ConstraintFiltered(
            f"No endpoints found that support {'image input' if needs_images else 'legacy completions'}.",
            requested_models=[m.slug for m in models],
            excluded_by=[field_name],
            constraint={"field": field_name, "detail": detail},
        )
    return kept


def _serving(models: list[ModelEntry], kind: str) -> list[ModelEntry]:
    kept = []
    for model in models:
        endpoints = tuple(e for e in model.endpoints if _serves(e, kind))
        if endpoints:
            kept.append(dataclasses.replace(model, endpoints=endpoints) if len(endpoints) < len(model.endpoints) else model)
    if not kept:
        detail = "no endpoint serves embeddings" if kind == "embeddings" else "an embedding model does not generate text"
        raise ConstraintFiltered(
            f"No endpoints found that support {'embeddings' if kind == 'embeddings' else kind}.",
            requested_models=[m.slug for m in models],
            excluded_by=["output_modalities"],
            constraint={"field": "output_modalities", "detail": detail},
        )
    return kept


def with_account_privacy(preferences: ProviderPreferences, key: KeyInfo | None) -> ProviderPreferences:
    """The account's privacy defaults (from the cached key info) narrow the request's preferences."""
    return with_privacy(preferences, key.privacy if key is not None else None)


def models_usable(*, snapshot: CatalogSnapshot, privacy: AccountPrivacy | None) -> set[str]:
    """The model ids an account may use under its privacy settings and provider lists (``GET /models/user``):
    those ``plan_route`` would find an endpoint for, with no preferences in the request."""
    preferences = with_privacy(DEFAULT_PREFERENCES, privacy)
    return {slug for slug, model in snapshot.models.items() if model_usable(model, preferences)}


def with_privacy(preferences: ProviderPreferences, privacy: AccountPrivacy | None) -> ProviderPreferences:
    if privacy is None:
        return preferences
    if preferences is DEFAULT_PREFERENCES:  # most requests name no provider preferences: one per privacy
        return _default_with_privacy(privacy)
    return _merged(preferences, privacy)


@functools.lru_cache(maxsize=4096)
def _default_with_privacy(privacy: AccountPrivacy) -> ProviderPreferences:
    return _merged(DEFAULT_PREFERENCES, privacy)


def _merged(preferences: ProviderPreferences, privacy: AccountPrivacy) -> ProviderPreferences:
    return dataclasses.replace(
        preferences,
        zdr=preferences.zdr or privacy.zdr_only,
        account_deny_training_paid=not privacy.allow_training_paid,
        account_deny_training_free=not privacy.allow_training_free,
        account_only=privacy.allowed_providers or None,
        account_ignore=privacy.ignored_providers,
    )


async def plan_request(
    *, body: dict, requested: str, kind: str, account_id: int, key_hash: str, session_id: str,
    max_tokens: int | None = None,
) -> Plan:
    snapshot = await catalog()
    slugs, router = _primary_slugs(body, requested, snapshot)
    fallbacks = body.get("models") or []
    models: list[ModelEntry] = []
    variant = None
    for index, slug in enumerate([*slugs, *fallbacks]):
        model, model_variant = await _resolve(slug)
        if model is None:
            if router is None or index >= len(slugs):
                raise BadRequest(f"{slug} is not a valid model ID", metadata={"availability": {"code": "model_not_found"}})
            continue
        if index == 0:
            variant = model_variant
        if all(m.slug != model.slug for m in models):
            models.append(model)
    models = _with_modalities(models, body, kind)
    key = await key_info(key_hash)
    if key is not None and key.guardrails:
        models = guardrails_apply(models, key.guardrails)
    preferences = with_account_privacy(preferences_parse(body.get("provider"), route=body.get("route")), key)
    sticky_key = (  # hashing the conversation only where a stickiness can be looked up or stored
        conversation_key(account_id=account_id, model=models[0].slug, body=body, session_id=session_id)
        if _may_stick(models, session_id)
        else None
    )
    sticky_id = await sticky_get(sticky_key) if sticky_key and not preferences.order else None
    route = plan_route(
        models=models,
        preferences=preferences,
        request_params=frozenset(body),
        variant=variant,
        health=health_snapshot(),
        sticky_endpoint_id=sticky_id,
        max_tokens=max_tokens,
    )
    by_slug = {m.slug: m for m in models}
    attempts = [
        Attempt(
            endpoint=e,
            model=by_slug.get(e.model_slug) or models[0],
            base_url=e.base_url,
            api_key=e.api_key,
            dropped=route.dropped_params.get(e.id, frozenset()),
        )
        for e in route.attempts
    ]
    attempts = await _with_byok(attempts, account_id, key_hash=key_hash, user=body.get("user"))
    web = enabled_plugin(body.get("plugins"), "web")
    if web is None and variant == "online":
        web = {"id": "web"}
    free = router == "openrouter/free" or variant == "free" or models[0].slug.endswith(":free")
    return Plan(
        attempts=attempts,
        router=router,
        variant=variant,
        free=free,
        web=web,
        sticky_key=sticky_key,
        byok_providers=frozenset(a.endpoint.provider_slug for a in attempts if a.is_byok),
    )


def _may_stick(models: list[ModelEntry], session_id: str) -> bool:
    """Whether an earlier request can have pinned this conversation to an endpoint: only a session, or an
    endpoint whose cache reads are cheaper, is ever remembered (``sticky_set``). Otherwise the lookup (a
    Redis round trip) is skipped."""
    return bool(session_id) or any(caches_prompts(e) for m in models for e in m.endpoints)


async def _with_byok(attempts: list[Attempt], account_id: int, *, key_hash: str, user) -> list[Attempt]:
    """BYOK attempts go first (prioritized keys) or after shared capacity (fallback keys);
    a key marked "always use" replaces that provider's shared capacity."""
    try:
        from accounts.byok_cache import provider_keys_for
    except ImportError:  # pragma: no cover - BYOK not installed
        return attempts
    keys = await provider_keys_for(account_id)
    if not keys:
        return attempts
    first: list[Attempt] = []
    shared: list[Attempt] = []
    last: list[Attempt] = []
    for attempt in attempts:
        provider_keys = [
            k
            for k in keys.get(attempt.endpoint.provider_slug) or ()
            if k.allows(model=attempt.model.slug, api_key_hash=key_hash, user_id=user if isinstance(user, str) else None)
        ]
        always = any(k.always_use for k in provider_keys)
        for key in provider_keys:
            byok = dataclasses.replace(
                attempt, base_url=_byok_target(attempt.endpoint), api_key=key.secret, is_byok=True
            )
            (first if key.prioritized or key.always_use else last).append(byok)
        if not always:
            shared.append(attempt)
    return first + shared + last


def _byok_target(endpoint: EndpointEntry) -> str:
    if settings.BYOK_REAL_UPSTREAMS and endpoint.real_base_url:
        return endpoint.real_base_url
    return endpoint.base_url
