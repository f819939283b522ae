"""Reads of the catalog: the public model list, one model, its endpoints, the providers.

Every function returns ``Model`` rows carrying ``active_endpoints`` (their active endpoints,
provider joined, cheapest first), which is what ``routing.presenters`` renders. The catalog is
small (hundreds of models), so filters that look inside JSON lists run in Python and behave the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Prefetch

from routing.models import Endpoint, Model, Provider

# Variants that are routing modes, not models of their own: "openai/gpt-4o:nitro" is gpt-4o.
# Static variants (":free", ":extended", ":thinking") are separate rows in the catalog.
DYNAMIC_VARIANTS = frozenset({"nitro", "floor", "online", "exacto"})

MODEL_SORTS = frozenset(
    {"most-popular", "newest", "top-weekly", "pricing-low-to-high", "pricing-high-to-low", "context-high-to-low",
     "throughput-high-to-low", "latency-low-to-high", "intelligence-high-to-low", "coding-high-to-low",
     "agentic-high-to-low", "design-arena-elo-high-to-low"}
)


@dataclass(frozen=True)
class ModelFilters:
    """The /models query, parsed. Empty tuples and ``None`` mean "no filter".

    * ``supported_parameters``: the model (any of its endpoints) supports all of them.
    * ``input_modalities``: the model accepts all of them.
    * ``output_modalities``: the model produces at least one of them; ``None`` = every model.
    * ``q``: case-insensitive substring of the id or the name.
    * ``authors``: the id's author part is one of them.
    * ``providers``: one of the model's endpoints is at one of them (slug or display name, any case).
    * ``min_context``; ``min/max_prompt_price`` and ``min/max_completion_price`` in nano-dollars per
      million tokens, compared with the model's listed (cheapest) price; ``zdr``: served by a
      zero-data-retention provider.
    * ``sort``: one of ``MODEL_SORTS``; those without data here keep the default (newest first).
    """

    supported_parameters: tuple[str, ...] = ()
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] | None = ("text",)
    q: str = ""
    authors: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    min_context: int | None = None
    min_prompt_price: int | None = None
    max_prompt_price: int | None = None
    min_completion_price: int | None = None
    max_completion_price: int | None = None
    zdr: bool = False
    sort: str | None = None


def _endpoint_price_key(endpoint: Endpoint) -> tuple:
    return (
        endpoint.price_prompt + endpoint.price_completion,
        endpoint.price_request,
        endpoint.price_image,
        endpoint.price_prompt,
        endpoint.tag,
    )


def _with_endpoints(queryset) -> list[Model]:
    endpoints = Endpoint.objects.filter(active=True).select_related("provider")
    models = list(queryset.prefetch_related(Prefetch("endpoints", queryset=endpoints, to_attr="active_endpoints")))
    for model in models:
        model.active_endpoints.sort(key=_endpoint_price_key)
    return models


def _listed_models() -> list[Model]:
    """Active models that at least one active endpoint serves, newest first."""
    return [m for m in _with_endpoints(Model.objects.filter(active=True)) if m.active_endpoints]


def model_cheapest_endpoint(model: Model) -> Endpoint | None:
    """The endpoint whose prices a model is listed at (``active_endpoints`` is cheapest first)."""
    endpoints = getattr(model, "active_endpoints", None)
    return endpoints[0] if endpoints else None


def model_supported_parameters(model: Model) -> list[str]:
    """The union of the parameters its active endpoints support, sorted."""
    return sorted({p for endpoint in model.active_endpoints for p in endpoint.supported_parameters})


def model_list(*, filters: ModelFilters | None = None) -> list[Model]:
    """The public model list for ``filters`` (all of it; the caller paginates)."""
    filters = filters or ModelFilters()
    models = [m for m in _listed_models() if _matches(m, filters)]
    return _sorted(models, filters.sort)


def zdr_endpoints() -> list[tuple[Model, Endpoint]]:
    """Every active endpoint of a zero-data-retention provider, with its model, by model id then cheapest first."""
    models = sorted(_listed_models(), key=lambda m: m.slug)
    return [(model, endpoint) for model in models for endpoint in model.active_endpoints if endpoint.provider.zdr]


def model_count(*, output_modalities: tuple[str, ...] | None = ("text",)) -> int:
    return len(model_list(filters=ModelFilters(output_modalities=output_modalities)))


def model_get(slug: str) -> Model | None:
    """A listed model by id, resolving dynamic variants ("…:nitro") and canonical slugs."""
    models = {m.slug: m for m in _with_endpoints(Model.objects.filter(active=True, slug__in=_candidates(slug)))}
    for candidate in _candidates(slug):
        model = models.get(candidate)
        if model is not None and model.active_endpoints:
            return model
    by_canonical = _with_endpoints(Model.objects.filter(active=True, canonical_slug=slug).order_by("slug"))
    # Prefer the base model ("a/b") over its static variants ("a/b:free").
    for model in sorted(by_canonical, key=lambda m: (":" in m.slug, m.slug)):
        if model.active_endpoints:
            return model
    return None


def model_endpoints(slug: str) -> Model | None:
    """A model with its active endpoints (cheapest first), even if it has none right now."""
    for candidate in _candidates(slug):
        models = _with_endpoints(Model.objects.filter(active=True, slug=candidate))
        if models:
            return models[0]
    return model_get(slug)


def provider_list() -> list[Provider]:
    """Providers that serve at least one active endpoint of an active model, by name."""
    return list(
        Provider.objects.filter(endpoints__active=True, endpoints__model__active=True).distinct().order_by("name")
    )


def _candidates(slug: str) -> list[str]:
    candidates = [slug]
    base, _, variant = slug.partition(":")
    if variant in DYNAMIC_VARIANTS:
        candidates.append(base)
    return candidates


def _lower(values: Iterable[str]) -> set[str]:
    return {v.strip().lower() for v in values if v.strip()}


def _matches(model: Model, f: ModelFilters) -> bool:
    cheapest = model_cheapest_endpoint(model)
    if f.output_modalities is not None and not set(f.output_modalities) & set(model.output_modalities):
        return False
    if f.input_modalities and not set(f.input_modalities) <= set(model.input_modalities):
        return False
    if f.supported_parameters and not set(f.supported_parameters) <= set(model_supported_parameters(model)):
        return False
    if f.q:
        needle = f.q.strip().lower()
        if needle not in model.slug.lower() and needle not in model.name.lower():
            return False
    if f.authors and model.author.lower() not in _lower(f.authors):
        return False
    if f.providers:
        wanted = _lower(f.providers)
        if not any(e.provider.slug in wanted or e.provider.name.lower() in wanted for e in model.active_endpoints):
            return False
    if f.min_context is not None and model.context_length < f.min_context:
        return False
    if f.zdr and not any(e.provider.zdr for e in model.active_endpoints):
        return False
    bounds = (
        (f.min_prompt_price, cheapest.price_prompt, False),
        (f.max_prompt_price, cheapest.price_prompt, True),
        (f.min_completion_price, cheapest.price_completion, False),
        (f.max_completion_price, cheapest.price_completion, True),
    )
    for bound, price, is_max in bounds:
        if bound is not None and (price > bound if is_max else price < bound):
            return False
    return True


def _sorted(models: list[Model], sort: str | None) -> list[Model]:
    # ``models`` arrive newest first (Model.Meta.ordering); sorts are stable, so ties keep that.
    def average_price(model: Model) -> int:
        cheapest = model_cheapest_endpoint(model)
        return cheapest.price_prompt + cheapest.price_completion

    if sort == "pricing-low-to-high":
        return sorted(models, key=average_price)
    if sort == "pricing-high-to-low":
        return sorted(models, key=average_price, reverse=True)
    if sort == "context-high-to-low":
        return sorted(models, key=lambda m: m.context_length, reverse=True)
    if sort == "newest":
        return sorted(models, key=lambda m: m.created, reverse=True)
    return models
