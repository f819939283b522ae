"""The routing decision: which endpoints a request tries, in which order. A pure function.

``plan_route`` takes the catalog's ``ModelEntry``s (the requested model first, then the
``models`` fallbacks), the request's parsed ``provider`` object, the names of the
parameters the request carries, its dynamic variant, the live health of endpoints
(``routing.stats.health_snapshot()``), a random generator and the sticky endpoint, and
returns the ordered attempts plus, per endpoint, the parameters it would not understand
(which the gateway drops). It raises ``RoutingError``s (404, with OpenRouter's
``availability`` payload) when filters leave nothing, and ``preferences_parse`` raises
``BadRequest`` (400) for a malformed ``provider`` object.

The rules, per model (reference §4-§6):

1. Hard filters, in this order; the first one that leaves a model with nothing names the
   error: data policy (``zdr``; ``data_collection: "deny"`` keeps endpoints that neither
   train nor retain prompts) → ``privacy_restricted``; ``only``/``ignore`` →
   ``allowed_providers``; ``quantizations`` (a closed model's ``null`` counts as
   ``unknown``) → ``quantization``; ``max_price`` → ``max_price``; ``require_parameters`` →
   ``require_parameters``; ``order`` with ``allow_fallbacks: false`` → ``allowed_providers``.
   Service-tier endpoints (``…/priority``, ``…/flex``) take part only under ``:nitro`` /
   ``:floor`` or when named by their full tag; ``:free`` keeps free endpoints only.
2. Soft requirements: ``tools`` (or ``tool_choice``), ``response_format`` and ``verbosity``
   keep the endpoints supporting them when there are any, else change nothing; so does
   ``max_tokens`` with the endpoints whose output limit (``max_completion_tokens``) allows it.
3. Order:
   - ``order``: the listed providers first, in list order (a base slug such as ``deepinfra``
     matches ``deepinfra/turbo`` too, cheapest first; a full tag matches only itself; service
     tiers only by full tag), then, if fallbacks are allowed, the others as in 3b/3c.
   - ``sort`` (or ``:nitro`` = throughput, ``:floor`` = price, ``:exacto`` = tool-calling
     success, then throughput; an explicit ``sort`` wins): strictly sorted, endpoints without
     measurements after measured ones, ties cheapest first.
   - otherwise price-weighted load balancing: one endpoint is drawn among those without
     significant failures in the last 30 s, with weight 1/price² (price = prompt + completion
     per million tokens; when any candidate is free, the draw is uniform among the free ones);
     the others follow cheapest first, recently failing ones last. With no stable endpoint the
     draw is among all.
   - The sticky endpoint (cache-aware routing, not with ``order``) goes first when it is in the
     primary group and not failing.
   - ``allow_fallbacks: false`` keeps only the first endpoint (or the ``order`` ones).
4. ``partition: "model"`` (default) keeps each model's endpoints together, primary first;
   ``"none"`` orders all of them as one group. ``route: "fallback"|"sort"`` is the legacy
   spelling of ``"model"|"none"``.
5. Soft preferences (``preferred_min_throughput``, ``preferred_max_latency``, compared with
   the 5-minute percentiles): endpoints that miss one are moved to the end of the whole list
   (so a fallback model's endpoint can come before them). An endpoint without measurements
   is not penalised; endpoints named in ``order`` always count as meeting them.

Cost: about 7-15 µs per decision for a five-endpoint model (``bench/routing_decision.py``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from billing.money import MoneyError, usd_input_to_nanos
from openrouter_site.errors import BadRequest, NotFound

from .catalog_cache import EndpointEntry, ModelEntry
from .stats import EndpointHealth

# OpenRouter's ``Parameter`` vocabulary: the request fields an endpoint may or may not support.
PARAMETERS = frozenset(
    {
        "temperature", "top_p", "top_k", "min_p", "top_a", "frequency_penalty", "presence_penalty",
        "repetition_penalty", "max_tokens", "max_completion_tokens", "logit_bias", "logprobs", "top_logprobs",
        "prediction", "seed", "response_format", "structured_outputs", "stop", "tools", "tool_choice",
        "parallel_tool_calls", "include_reasoning", "reasoning", "reasoning_effort", "web_search_options",
        "verbosity",
    }
)
# A request parameter that an endpoint supports under another name.
PARAMETER_ALIASES = {"max_completion_tokens": "max_tokens", "reasoning_effort": "reasoning", "include_reasoning": "reasoning"}
# (endpoint capability, request parameters that ask for it): routed to supporting endpoints if any.
SOFT_REQUIREMENTS = (("tools", ("tools", "tool_choice")), ("response_format", ("response_format",)), ("verbosity", ("verbosity",)))
SORTS = ("price", "throughput", "latency", "exacto")
VARIANT_SORTS = {"nitro": "throughput", "floor": "price", "exacto": "exacto"}
VARIANT_TIERS = {"nitro": "priority", "floor": "flex"}
QUANTIZATIONS = frozenset({"int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown"})
PERCENTILE_NAMES = ("p50", "p75", "p90", "p99")
PREFERENCE_FIELDS = frozenset(
    {"order", "allow_fallbacks", "require_parameters", "data_collection", "zdr", "enforce_distillable_text", "only",
     "ignore", "quantizations", "sort", "max_price", "preferred_min_throughput", "preferred_max_latency"}
)
MAX_PRICE_FIELDS = ("prompt", "completion", "request", "image", "audio")
EXACTO_MIN_TOOL_REQUESTS = 5  # fewer tool-calling requests than this: "not measured"
DOCS_URL = "https://openrouter.ai/docs/guides/routing/provider-selection"


# --- errors ----------------------------------------------------------------------------------------


class RoutingError(NotFound):
    """No endpoint is left for any requested model. ``availability`` follows reference §8."""

    code = "no_endpoints"
    error_type = "not_found"

    def __init__(
        self,
        message: str,
        *,
        requested_models: Sequence[str],
        excluded_by: Sequence[str] = (),
        constraint: dict[str, str] | None = None,
    ) -> None:
        availability: dict[str, Any] = {"code": self.code, "retryable": False, "requested_models": list(requested_models)}
        if excluded_by:
            availability["excluded_by"] = list(excluded_by)
        if constraint is not None:
            availability["constraint"] = constraint
        availability["docs_url"] = DOCS_URL
        self.availability = availability
        super().__init__(message, metadata={"availability": availability})

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"].update(error_type=self.error_type, http_status=self.status, availability=self.availability)
        return body


class NoEndpoints(RoutingError):
    code = "no_endpoints"


class PrivacyRestricted(RoutingError):
    code = "privacy_restricted"


class ConstraintFiltered(RoutingError):
    code = "constraint_filtered"


# --- preferences -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaxPrice:
    """Hard price ceilings in nano-dollars: per million tokens (prompt, completion), per request, per image."""

    prompt: int | None = None
    completion: int | None = None
    request: int | None = None
    image: int | None = None

    def admits(self, endpoint: EndpointEntry) -> bool:
        return (
            (self.prompt is None or endpoint.price_prompt <= self.prompt)
            and (self.completion is None or endpoint.price_completion <= self.completion)
            and (self.request is None or endpoint.price_request <= self.request)
            and (self.image is None or endpoint.price_image <= self.image)
        )


@dataclass(frozen=True, slots=True)
class ProviderPreferences:
    """The request's ``provider`` object, validated. Provider names are lower-cased."""

    order: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    require_parameters: bool = False
    data_collection: str = "allow"  # "allow" | "deny"
    zdr: bool = False
    enforce_distillable_text: bool = False  # accepted; the catalog has no distillation data yet
    only: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    quantizations: frozenset[str] | None = None
    sort: str | None = None  # "price" | "throughput" | "latency" | "exacto"
    partition: str = "model"  # "model" | "none"
    max_price: MaxPrice | None = None
    preferred_min_throughput: tuple[tuple[str, float], ...] = ()  # (percentile, tokens/s)
    preferred_max_latency_ms: tuple[tuple[str, float], ...] = ()  # (percentile, ms)
    # The account's privacy defaults (settings page), merged in by planning; a request cannot widen them.
    account_deny_training_paid: bool = False
    account_deny_training_free: bool = False
    account_only: tuple[str, ...] | None = None
    account_ignore: tuple[str, ...] = ()


DEFAULT_PREFERENCES = ProviderPreferences()


def _bool(raw: dict, name: str, default: bool) -> bool:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'provider.{name}' must be a boolean")
    return value


def _names(raw: dict, name: str) -> tuple[str, ...] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise BadRequest(f"'provider.{name}' must be an array of provider slugs")
    return tuple(dict.fromkeys(item.strip().lower() for item in value))


def _cutoffs(raw: dict, name: str, *, scale: float) -> tuple[tuple[str, float], ...]:
    value = raw.get(name)
    if value is None:
        return ()
    if _is_number(value):
        pairs = [("p50", value)]
    elif isinstance(value, dict):
        unknown = set(value) - set(PERCENTILE_NAMES)
        if unknown:
            raise BadRequest(f"'provider.{name}' accepts only {', '.join(PERCENTILE_NAMES)}; got {sorted(unknown)[0]!r}")
        pairs = [(key, value[key]) for key in PERCENTILE_NAMES if value.get(key) is not None]
    else:
        raise BadRequest(f"'provider.{name}' must be a number or an object of percentiles")
    for key, number in pairs:
        if not _is_number(number) or number < 0:
            raise BadRequest(f"'provider.{name}.{key}' must be a non-negative number")
    return tuple((key, float(number) * scale) for key, number in pairs)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _max_price(raw: dict) -> MaxPrice | None:
    value = raw.get("max_price")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("'provider.max_price' must be an object")
    unknown = set(value) - set(MAX_PRICE_FIELDS)
    if unknown:
        raise BadRequest(f"'provider.max_price.{sorted(unknown)[0]}' is not a price field ({', '.join(MAX_PRICE_FIELDS)})")
    prices: dict[str, int | None] = {}
    for name in ("prompt", "completion", "request", "image", "audio"):
        amount = value.get(name)
        if amount is None:
            prices[name] = None
            continue
        try:
            nanos = usd_input_to_nanos(amount)  # USD per million tokens -> nano-dollars per million
        except MoneyError:
            raise BadRequest(f"'provider.max_price.{name}' must be a number (USD)") from None
        if nanos < 0:
            raise BadRequest(f"'provider.max_price.{name}' must not be negative")
        prices[name] = nanos
    prices.pop("audio")  # no endpoint has an audio price yet
    if all(price is None for price in prices.values()):
        return None
    return MaxPrice(**prices)


def preferences_parse(provider: object, *, route: object = None) -> ProviderPreferences:
    """The request's ``provider`` object (and legacy ``route``) -> ``ProviderPreferences``; 400 if malformed."""
    if route is not None and route not in ("fallback", "sort"):
        raise BadRequest("'route' must be \"fallback\" or \"sort\"")
    partition = "none" if route == "sort" else "model"
    if provider is None:
        return DEFAULT_PREFERENCES if partition == "model" else ProviderPreferences(partition=partition)
    if not isinstance(provider, dict):
        raise BadRequest("'provider' must be an object")
    unknown = set(provider) - PREFERENCE_FIELDS
    if unknown:
        raise BadRequest(f"'provider.{sorted(unknown)[0]}' is not a provider preference")
    data_collection = provider.get("data_collection") or "allow"
    if data_collection not in ("allow", "deny"):
        raise BadRequest("'provider.data_collection' must be \"allow\" or \"deny\"")
    quantizations = provider.get("quantizations")
    if quantizations is not None:
        if not isinstance(quantizations, list) or not all(isinstance(q, str) and q in QUANTIZATIONS for q in quantizations):
            raise BadRequest(f"'provider.quantizations' must be an array of: {', '.join(sorted(QUANTIZATIONS))}")
        quantizations = frozenset(quantizations) or None
    sort = provider.get("sort")
    if isinstance(sort, dict):
        unknown = set(sort) - {"by", "partition"}
        if unknown:
            raise BadRequest(f"'provider.sort.{sorted(unknown)[0]}' is not a sort option (by, partition)")
        if sort.get("partition") is not None:
            if sort["partition"] not in ("model", "none"):
                raise BadRequest("'provider.sort.partition' must be \"model\" or \"none\"")
            partition = sort["partition"]
        sort = sort.get("by")
    if sort is not None and sort not in SORTS:
        raise BadRequest(f"'provider.sort' must be one of: {', '.join(SORTS)}")
    return ProviderPreferences(
        order=_names(provider, "order") or (),
        allow_fallbacks=_bool(provider, "allow_fallbacks", True),
        require_parameters=_bool(provider, "require_parameters", False),
        data_collection=data_collection,
        zdr=_bool(provider, "zdr", False),
        enforce_distillable_text=_bool(provider, "enforce_distillable_text", False),
        only=_names(provider, "only"),
        ignore=_names(provider, "ignore") or (),
        quantizations=quantizations,
        sort=sort,
        partition=partition,
        max_price=_max_price(provider),
        preferred_min_throughput=_cutoffs(provider, "preferred_min_throughput", scale=1.0),
        preferred_max_latency_ms=_cutoffs(provider, "preferred_max_latency", scale=1000.0),
    )


# --- the decision ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Endpoints to try in order, and the request parameters each would not understand."""

    attempts: list[EndpointEntry]
    dropped_params: dict[int, frozenset[str]]
    sort: str | None  # the effective sort; None = load balanced or ``order``
    load_balanced: bool


def matches(name: str, endpoint: EndpointEntry) -> bool:
    """A full tag matches itself; a base slug (or display name) every variant but service tiers."""
    if name == endpoint.tag:
        return True
    return endpoint.service_tier is None and (name == endpoint.provider_slug or name == endpoint.provider_name.lower())


def _supports(endpoint: EndpointEntry, parameter: str) -> bool:
    supported = endpoint.supported_parameters
    return parameter in supported or PARAMETER_ALIASES.get(parameter, "") in supported


def _price(endpoint: EndpointEntry) -> int:
    return endpoint.price_prompt + endpoint.price_completion


def _price_key(endpoint: EndpointEntry) -> tuple:
    return (endpoint.price_prompt + endpoint.price_completion, endpoint.price_request, endpoint.tag)


def _failing(endpoint: EndpointEntry, health: Mapping[int, EndpointHealth]) -> bool:
    h = health.get(endpoint.id)
    return h is not None and h.recently_failing


class _Filtered(Exception):
    def __init__(self, kind: type[RoutingError], message: str, excluded_by: str | None = None, detail: str = ""):
        self.kind, self.message, self.excluded_by, self.detail = kind, message, excluded_by, detail


_CANDIDATES: dict[tuple, tuple[ModelEntry, tuple[EndpointEntry, ...]]] = {}
_CANDIDATES_MAX = 4096


def _candidates_cached(
    model: ModelEntry, prefs: ProviderPreferences, variant: str | None, relevant: frozenset[str], named: frozenset[str]
) -> list[EndpointEntry]:
    """``_candidates``, remembered: it depends only on its arguments, and a catalog snapshot's entries never
    change (a new snapshot has new entries, so a remembered answer is used only for the same entry)."""
    key = (id(model), prefs, variant, relevant, named)
    try:
        hit = _CANDIDATES.get(key)
    except TypeError:  # preferences holding something unhashable: not remembered
        return _candidates(model, prefs, variant, relevant, named)
    if hit is not None and hit[0] is model:
        return list(hit[1])
    endpoints = _candidates(model, prefs, variant, relevant, named)  # a refusal (_Filtered) is not remembered
    if len(_CANDIDATES) >= _CANDIDATES_MAX:
        _CANDIDATES.clear()
    _CANDIDATES[key] = (model, tuple(endpoints))
    return endpoints


def _candidates(
    model: ModelEntry, prefs: ProviderPreferences, variant: str | None, relevant: frozenset[str], named: frozenset[str]
) -> list[EndpointEntry]:
    """Step 1 and 2 for one model; raises ``_Filtered`` naming the filter that left nothing."""
    tier = VARIANT_TIERS.get(variant or "")
    endpoints = [e for e in model.endpoints if e.service_tier is None or e.service_tier == tier or e.tag in named]
    if variant == "free":
        endpoints = [e for e in endpoints if e.is_free]
    if not endpoints:
        raise _Filtered(NoEndpoints, f"No endpoints found for {model.slug}.")

    def keep(kept: list[EndpointEntry], kind, message, excluded_by, detail="") -> list[EndpointEntry]:
        if not kept:
            raise _Filtered(kind, message, excluded_by, detail)
        return kept

    if prefs.zdr:
        endpoints = keep([e for e in endpoints if e.zdr], PrivacyRestricted,
                         "No endpoints found matching your data policy (Zero data retention: true).", "data_policy:zdr")
    if prefs.data_collection == "deny":
        endpoints = keep([e for e in endpoints if not e.trains_on_data and not e.retains_prompts], PrivacyRestricted,
                         "No endpoints found matching your data policy (Data collection: deny).", "data_policy:training")
    if prefs.only is not None:
        only = prefs.only
        endpoints = keep([e for e in endpoints if any(matches(n, e) for n in only)], ConstraintFiltered,
                         f"No endpoints found for {model.slug} among the allowed providers.", "allowed_providers",
                         f"provider.only {list(only)} matches no endpoint of {model.slug}")
    if prefs.ignore:
        ignore = prefs.ignore
        endpoints = keep([e for e in endpoints if not any(matches(n, e) for n in ignore)], ConstraintFiltered,
                         f"No endpoints found for {model.slug}: every provider is ignored.", "allowed_providers",
                         f"provider.ignore {list(ignore)} excludes every endpoint of {model.slug}")
    # The account's privacy defaults after the request's own lists: what they remove is privacy_restricted.
    if prefs.account_deny_training_paid or prefs.account_deny_training_free:
        def refused(e: EndpointEntry) -> bool:
            deny = prefs.account_deny_training_free if e.is_free else prefs.account_deny_training_paid
            return deny and e.trains_on_data

        endpoints = keep([e for e in endpoints if not refused(e)], PrivacyRestricted,
                         "No endpoints found matching your data policy (account setting: no training on prompts).",
                         "data_policy:account_training")
    if prefs.account_only is not None:
        account_only = prefs.account_only
        endpoints = keep([e for e in endpoints if e.provider_slug in account_only], PrivacyRestricted,
                         f"No endpoints found for {model.slug} among your account's allowed providers.",
                         "data_policy:account_allowed_providers")
    if prefs.account_ignore:
        account_ignore = prefs.account_ignore
        endpoints = keep([e for e in endpoints if e.provider_slug not in account_ignore], PrivacyRestricted,
                         f"No endpoints found for {model.slug}: your account ignores every provider.",
                         "data_policy:account_ignored_providers")
    if prefs.quantizations is not None:
        wanted = prefs.quantizations
        endpoints = keep([e for e in endpoints if (e.quantization or "unknown") in wanted], ConstraintFiltered,
                         f"No endpoints found for {model.slug} with the requested quantizations.", "quantization",
                         f"no endpoint has a quantization in {sorted(wanted)}")
    if prefs.max_price is not None:
        ceiling = prefs.max_price
        endpoints = keep([e for e in endpoints if ceiling.admits(e)], ConstraintFiltered,
                         f"No endpoints found for {model.slug} within your max_price.", "max_price",
                         "every endpoint's price exceeds provider.max_price")
    if prefs.require_parameters and relevant:
        endpoints = keep([e for e in endpoints if all(_supports(e, p) for p in relevant)], ConstraintFiltered,
                         "No endpoints found that can handle the requested parameters.", "require_parameters",
                         f"no endpoint supports all of: {', '.join(sorted(relevant))}")
    if prefs.order and not prefs.allow_fallbacks:
        order = prefs.order
        endpoints = keep([e for e in endpoints if any(matches(n, e) for n in order)], ConstraintFiltered,
                         f"None of the providers in provider.order serves {model.slug}, and fallbacks are off.",
                         "allowed_providers", f"provider.order {list(order)} matches no endpoint of {model.slug}")
    return endpoints


def model_usable(model: ModelEntry, preferences: ProviderPreferences) -> bool:
    """Whether a request for ``model`` under ``preferences`` has an endpoint left: the very filters ``plan_route``
    applies (``_candidates``), so ``GET /models/user`` and routing never disagree."""
    try:
        return bool(_candidates(model, preferences, None, frozenset(), frozenset()))
    except _Filtered:
        return False


def _soft(endpoints: list[EndpointEntry], wanted: Sequence[str]) -> list[EndpointEntry]:
    for capability in wanted:
        supporting = [e for e in endpoints if capability in e.supported_parameters]
        if supporting:
            endpoints = supporting
    return endpoints


def _fitting_output(endpoints: list[EndpointEntry], max_tokens: int) -> list[EndpointEntry]:
    """The endpoints that can produce ``max_tokens`` tokens when there are any, else all (soft)."""
    fitting = [e for e in endpoints if e.max_completion_tokens is None or e.max_completion_tokens >= max_tokens]
    return fitting or endpoints


def _pick(pool: list[EndpointEntry], rng: random.Random) -> EndpointEntry:
    """One endpoint, with probability proportional to 1/price²; uniform among free ones if any."""
    if len(pool) == 1:
        return pool[0]
    free = [e for e in pool if _price(e) == 0]
    if free:
        return free[int(rng.random() * len(free))]
    weights = [1.0 / (float(_price(e)) ** 2) for e in pool]
    point = rng.random() * sum(weights)
    for endpoint, weight in zip(pool, weights, strict=True):
        point -= weight
        if point < 0:
            return endpoint
    return pool[-1]


def _sort_key(sort: str, health: Mapping[int, EndpointHealth]):
    def throughput(e: EndpointEntry) -> tuple:
        h = health.get(e.id)
        if h is None or h.p50_throughput is None:
            return (1, 0.0)
        return (0, -h.p50_throughput)

    if sort == "price":
        return _price_key
    if sort == "throughput":
        return lambda e: (*throughput(e), *_price_key(e))
    if sort == "latency":

        def latency(e: EndpointEntry) -> tuple:
            h = health.get(e.id)
            if h is None or h.p50_latency_ms is None:
                return (1, 0.0, *_price_key(e))
            return (0, h.p50_latency_ms, *_price_key(e))

        return latency

    def exacto(e: EndpointEntry) -> tuple:
        h = health.get(e.id)
        if h is None or h.tool_call_success is None or h.tool_call_requests < EXACTO_MIN_TOOL_REQUESTS:
            quality = (1, 0.0)
        else:
            quality = (0, -round(h.tool_call_success, 2))
        return (*quality, *throughput(e), *_price_key(e))

    return exacto


def _meets(endpoint: EndpointEntry, prefs: ProviderPreferences, health: Mapping[int, EndpointHealth]) -> bool:
    h = health.get(endpoint.id)
    if h is None:
        return True
    if h.throughput is not None:
        for name, minimum in prefs.preferred_min_throughput:
            if getattr(h.throughput, name) < minimum:
                return False
    if h.latency_ms is not None:
        for name, maximum in prefs.preferred_max_latency_ms:
            if getattr(h.latency_ms, name) > maximum:
                return False
    return True


def _order_group(
    group: list[EndpointEntry],
    prefs: ProviderPreferences,
    sort: str | None,
    health: Mapping[int, EndpointHealth],
    rng: random.Random,
    sticky: int | None,
    soft_prefs: bool,
) -> list[EndpointEntry]:
    if prefs.order:
        by_price = sorted(group, key=_price_key)
        first: list[EndpointEntry] = []
        taken: set[int] = set()
        for name in prefs.order:
            for e in by_price:
                if e.id not in taken and matches(name, e):
                    first.append(e)
                    taken.add(e.id)
        rest = [e for e in group if e.id not in taken]
        if not prefs.allow_fallbacks or not rest:
            return first
        key = _sort_key(sort, health) if sort else _price_key
        return first + sorted(rest, key=lambda e: (_failing(e, health), key(e)))

    if sort:
        ordered = sorted(group, key=_sort_key(sort, health))
    else:
        stable: list[EndpointEntry] = []
        failing: list[EndpointEntry] = []
        for e in group:
            (failing if _failing(e, health) else stable).append(e)
        chosen = None
        if sticky is not None:
            chosen = next((e for e in stable if e.id == sticky), None)
        if chosen is None:
            pool = stable or failing
            if soft_prefs:
                pool = [e for e in pool if _meets(e, prefs, health)] or pool
            chosen = _pick(pool, rng)
        stable.sort(key=_price_key)
        failing.sort(key=_price_key)
        ordered = [chosen, *(e for e in stable if e.id != chosen.id), *(e for e in failing if e.id != chosen.id)]
        sticky = None  # already placed
    if sticky is not None and ordered[0].id != sticky:
        for index, e in enumerate(ordered):
            if e.id == sticky and not _failing(e, health):
                ordered.insert(0, ordered.pop(index))
                break
    if not prefs.allow_fallbacks:
        return ordered[:1]
    return ordered


_EMPTY_HEALTH: Mapping[int, EndpointHealth] = {}
_RNG = random.Random()


def plan_route(
    *,
    models: Sequence[ModelEntry],
    preferences: ProviderPreferences = DEFAULT_PREFERENCES,
    request_params: Iterable[str] = frozenset(),
    variant: str | None = None,
    health: Mapping[int, EndpointHealth] | None = None,
    rng: random.Random | None = None,
    sticky_endpoint_id: int | None = None,
    max_tokens: int | None = None,
) -> RoutePlan:
    """The endpoints to try, in order, for ``models`` (primary first). Raises ``RoutingError`` (404)."""
    prefs = preferences
    health = health if health is not None else _EMPTY_HEALTH
    rng = rng or _RNG
    params = request_params if isinstance(request_params, frozenset) else frozenset(request_params)
    relevant = params & PARAMETERS
    soft_wanted = [capability for capability, names in SOFT_REQUIREMENTS if not params.isdisjoint(names)]
    named = frozenset(prefs.order) | frozenset(prefs.only or ())
    sort = prefs.sort or VARIANT_SORTS.get(variant or "")
    soft_prefs = bool(prefs.preferred_min_throughput or prefs.preferred_max_latency_ms)
    sticky = None if prefs.order else sticky_endpoint_id

    groups: list[list[EndpointEntry]] = []
    first_failure: _Filtered | None = None
    for model in models:
        try:
            endpoints = _candidates_cached(model, prefs, variant, relevant, named)
        except _Filtered as failure:
            first_failure = first_failure or failure
            continue
        if soft_wanted:
            endpoints = _soft(endpoints, soft_wanted)
        if max_tokens:
            endpoints = _fitting_output(endpoints, max_tokens)
        groups.append(endpoints)
    if not groups:
        slugs = [m.slug for m in models]
        if first_failure is None:
            raise NoEndpoints("No models provided." if not models else "No endpoints found.", requested_models=slugs)
        constraint = None
        if first_failure.kind is ConstraintFiltered:
            constraint = {"field": first_failure.excluded_by, "detail": first_failure.detail}
        raise first_failure.kind(
            first_failure.message,
            requested_models=slugs,
            excluded_by=[first_failure.excluded_by] if first_failure.excluded_by else (),
            constraint=constraint,
        )
    if prefs.partition == "none" and len(groups) > 1:
        groups = [[e for group in groups for e in group]]

    attempts: list[EndpointEntry] = []
    for index, group in enumerate(groups):
        attempts += _order_group(group, prefs, sort, health, rng, sticky if index == 0 else None, soft_prefs)

    if soft_prefs:
        ordered = frozenset(e.id for e in attempts if any(matches(n, e) for n in prefs.order)) if prefs.order else ()
        meeting: list[EndpointEntry] = []
        missing: list[EndpointEntry] = []
        for e in attempts:
            (meeting if e.id in ordered or _meets(e, prefs, health) else missing).append(e)
        attempts = meeting + missing

    dropped: dict[int, frozenset[str]] = {}
    if relevant:
        for e in attempts:
            unsupported = frozenset(p for p in relevant if not _supports(e, p))
            if unsupported:
                dropped[e.id] = unsupported
    return RoutePlan(attempts=attempts, dropped_params=dropped, sort=sort, load_balanced=not sort and not prefs.order)
