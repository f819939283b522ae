"""The public catalog API: /models, /models/count, /model/{author}/{slug},
/models/{author}/{slug}/endpoints, /embeddings/models, /endpoints/zdr and /providers (no authentication), and
/models/user (any API key).

Views parse the query, call a selector and render through ``routing.presenters``; every failure
leaves in OpenRouter's error envelope.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import orjson
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from accounts.auth import api_key_from_request
from accounts.keycache import account_privacy
from billing.money import MoneyError, usd_input_to_nanos
from openrouter_site.errors import ApiError, BadRequest, MethodNotAllowed, NotFound, error_response
from openrouter_site.inputs import MAX_QUERY_INT, query_int
from routing import presenters, selectors
from routing.catalog_cache import catalog_read
from routing.planning import models_usable
from routing.services import CATALOG_VERSION_CACHE_KEY, INPUT_MODALITIES, OUTPUT_MODALITIES
from routing.stats import endpoint_stats

MODELS_CACHE_SECONDS = 30
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


def _json(body: object, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def public_get(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET/HEAD only, no auth, no CSRF; ``ApiError``s become the OpenRouter envelope."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return error_response(MethodNotAllowed(headers={"Allow": "GET, HEAD"}))
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return error_response(exc)

    return wrapper


# --- query parsing ---------------------------------------------------------------------------


def _int_param(query: QueryDict, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    return query_int(query, name, minimum=minimum, maximum=maximum if maximum is not None else MAX_QUERY_INT)


def _price_param(query: QueryDict, name: str) -> int | None:
    """A price bound in USD per million tokens -> nano-dollars per million tokens."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        nanos = usd_input_to_nanos(raw)
    except MoneyError:
        raise BadRequest(f"Invalid query parameter {name}: expected a number, got {raw[:40]!r}") from None
    if nanos < 0:
        raise BadRequest(f"Invalid query parameter {name}: must not be negative")
    return nanos


def _list_param(query: QueryDict, name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in query.get(name, "").split(",") if item.strip())


def _modalities_param(query: QueryDict, name: str, allowed: frozenset[str]) -> tuple[str, ...]:
    values = tuple(v.lower() for v in _list_param(query, name))
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise BadRequest(f"Invalid query parameter {name}: unknown modality {unknown[0]!r}; allowed: {sorted(allowed)}")
    return values


def _output_modalities_param(query: QueryDict) -> tuple[str, ...] | None:
    """Default ``text``; ``all`` means every model (``None``)."""
    if query.get("output_modalities", "").strip().lower() == "all":
        return None
    return _modalities_param(query, "output_modalities", OUTPUT_MODALITIES) or ("text",)


def _model_filters(query: QueryDict) -> selectors.ModelFilters:
    sort = query.get("sort") or None
    if sort is not None and sort not in selectors.MODEL_SORTS:
        raise BadRequest(f"Invalid query parameter sort: {sort!r}; allowed: {sorted(selectors.MODEL_SORTS)}")
    zdr = query.get("zdr", "").lower()
    if zdr not in ("", "true", "false"):
        raise BadRequest(f"Invalid query parameter zdr: expected true or false, got {query.get('zdr')!r}")
    return selectors.ModelFilters(
        supported_parameters=_list_param(query, "supported_parameters"),
        input_modalities=_modalities_param(query, "input_modalities", INPUT_MODALITIES),
        output_modalities=_output_modalities_param(query),
        q=query.get("q", "").strip(),
        authors=_list_param(query, "model_authors"),
        providers=_list_param(query, "providers"),
        min_context=_int_param(query, "context", minimum=1),
        min_prompt_price=_price_param(query, "min_price"),
        max_prompt_price=_price_param(query, "max_price"),
        min_completion_price=_price_param(query, "min_output_price"),
        max_completion_price=_price_param(query, "max_output_price"),
        zdr=zdr == "true",
        sort=sort,
    )


def _models_cache_key(request: HttpRequest) -> str:
    version = cache.get(CATALOG_VERSION_CACHE_KEY, 0)
    query = sorted((k, v) for k in request.GET for v in request.GET.getlist(k))
    digest = hashlib.sha256(orjson.dumps(query)).hexdigest()[:32]
    return f"api:models:{version}:{digest}"


# --- views -----------------------------------------------------------------------------------


@public_get
def models_list(request: HttpRequest) -> HttpResponse:
    """GET /models: ``{data, total_count, links: {next}}``, cached for 30 s per catalog version."""
    key = _models_cache_key(request)
    body = cache.get(key)
    if body is None:
        body = orjson.dumps(_models_page(request))
        cache.set(key, body, MODELS_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


def _models_page(request: HttpRequest, filters: selectors.ModelFilters | None = None, keep: set[str] | None = None) -> dict:
    query = request.GET
    offset = _int_param(query, "offset", minimum=0)
    limit = _int_param(query, "limit", minimum=1, maximum=MAX_LIMIT)
    models = selectors.model_list(filters=filters or _model_filters(query))
    if keep is not None:
        models = [m for m in models if m.slug in keep]
    total = len(models)
    next_link = None
    if offset is not None or limit is not None:
        offset = offset or 0
        limit = limit or DEFAULT_LIMIT
        models = models[offset : offset + limit]
        if offset + limit < total:
            following = query.copy()
            following["offset"] = str(offset + limit)
            following["limit"] = str(limit)
            next_link = f"{request.path}?{following.urlencode()}"
    return {
        "data": [presenters.model_dict(model) for model in models],
        "total_count": total,
        "links": {"next": next_link},
    }


@public_get
def embeddings_models(request: HttpRequest) -> HttpResponse:
    """GET /embeddings/models: the embedding models, as /models lists them (``offset``/``limit`` paginate)."""
    key = "embeddings:" + _models_cache_key(request)
    body = cache.get(key)
    if body is None:
        body = orjson.dumps(_models_page(request, selectors.ModelFilters(output_modalities=("embeddings",))))
        cache.set(key, body, MODELS_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
def models_user(request: HttpRequest) -> HttpResponse:
    """GET /models/user (any key): the models this account may use under its privacy settings and provider
    lists, decided by routing's own filter (``routing.planning.models_usable``); every output modality."""
    if request.method not in ("GET", "HEAD"):
        return error_response(MethodNotAllowed(headers={"Allow": "GET, HEAD"}))
    try:
        api_key = api_key_from_request(request)
        usable = models_usable(snapshot=catalog_read(), privacy=account_privacy(api_key.account))
        page = _models_page(request, selectors.ModelFilters(output_modalities=None), keep=usable)
    except ApiError as exc:
        return error_response(exc)
    return _json(page)


@public_get
def endpoints_zdr(request: HttpRequest) -> HttpResponse:
    """GET /endpoints/zdr: every endpoint of a zero-data-retention provider, with its live uptime, latency and
    throughput (``PublicEndpoint``)."""
    rows = selectors.zdr_endpoints()
    stats = endpoint_stats([endpoint.id for _, endpoint in rows])
    return _json({"data": [presenters.endpoint_dict(model, e, stats.get(e.id)) for model, e in rows]})


@public_get
def models_count(request: HttpRequest) -> HttpResponse:
    """GET /models/count: ``{"data": {"count": N}}`` (honours ``output_modalities``)."""
    count = selectors.model_count(output_modalities=_output_modalities_param(request.GET))
    return _json({"data": {"count": count}})


@public_get
def model_detail(request: HttpRequest, author: str, slug: str) -> HttpResponse:
    """GET /model/{author}/{slug}: ``{"data": Model}``; variants such as ``:free`` or ``:nitro`` resolve."""
    model = selectors.model_get(f"{author}/{slug}")
    if model is None:
        raise NotFound(f"Model {author}/{slug} not found")
    return _json({"data": presenters.model_dict(model)})


@public_get
def model_endpoints(request: HttpRequest, author: str, slug: str) -> HttpResponse:
    """GET /models/{author}/{slug}/endpoints: ``{"data": ListEndpointsResponse}``, cheapest first."""
    model = selectors.model_endpoints(f"{author}/{slug}")
    if model is None:
        raise NotFound(f"Model {author}/{slug} not found")
    return _json({"data": presenters.model_endpoints_dict(model)})


@public_get
def providers_list(request: HttpRequest) -> HttpResponse:
    """GET /providers."""
    return _json({"data": [presenters.provider_dict(p) for p in selectors.provider_list()]})
