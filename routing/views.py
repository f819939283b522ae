"""The model browser (/models) and a model's page (/models/<author>/<slug>); public, no login.

All state is in the URL (search, filters, sort), so a link reproduces the view. ``/api/v1/models``
stays the JSON API. A bad filter answers 400 with the reason; an unknown model is an HTML 404.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from billing.money import nanos_to_price_string, usd_input_to_nanos

from . import selectors
from .models import Model
from .stats import endpoint_stats

INPUT_MODALITIES = ("text", "image", "file", "audio")
OUTPUT_MODALITIES = ("text", "image")
CONTEXTS = (("", "any"), ("16000", "16K+"), ("64000", "64K+"), ("128000", "128K+"), ("200000", "200K+"), ("1000000", "1M+"))
PARAMETERS = ("tools", "structured_outputs", "response_format", "reasoning", "seed", "logprobs")
SORTS = (
    ("newest", "Newest"),
    ("pricing-low-to-high", "Price: low to high"),
    ("pricing-high-to-low", "Price: high to low"),
    ("context-high-to-low", "Context: longest"),
    ("throughput-high-to-low", "Throughput: fastest"),
)
MAX_PRICE_USD = Decimal(1000)  # per million tokens


class BadFilter(Exception):
    pass


def _bad(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "errors/error.html", {"status": 400, "title": "Bad request", "message": message}, status=400)


def _page_filters(query) -> tuple[selectors.ModelFilters, dict]:
    q = query.get("q", "").strip()[:200]
    modality = query.get("modality", "")
    if modality and modality not in INPUT_MODALITIES:
        raise BadFilter(f"'modality' must be one of {', '.join(INPUT_MODALITIES)}")
    output = query.get("output", "") or "text"
    if output not in (*OUTPUT_MODALITIES, "all"):
        raise BadFilter("'output' must be text, image or all")
    context = query.get("context", "")
    if context not in {c for c, _ in CONTEXTS}:
        raise BadFilter("'context' must be one of the listed context lengths")
    max_price = query.get("max_price", "").strip()
    max_price_nanos = None
    if max_price:
        try:
            price = Decimal(max_price)
        except InvalidOperation:
            raise BadFilter("'max_price' must be a number of USD per million tokens") from None
        if not price.is_finite() or price < 0 or price > MAX_PRICE_USD:
            raise BadFilter(f"'max_price' must be between 0 and {MAX_PRICE_USD} USD per million tokens")
        max_price_nanos = usd_input_to_nanos(str(price))  # nano-dollars per million tokens
    free = query.get("free", "") == "on"
    params = tuple(p for p in query.getlist("params") if p)
    if any(p not in PARAMETERS for p in params):
        raise BadFilter(f"'params' must be among {', '.join(PARAMETERS)}")
    sort = query.get("sort", "") or "newest"
    if sort not in {s for s, _ in SORTS}:
        raise BadFilter("'sort' is not a known order")
    provider = query.get("provider", "").strip()[:64]
    author = query.get("author", "").strip()[:80]
    filters = selectors.ModelFilters(
        q=q,
        input_modalities=(modality,) if modality else (),
        output_modalities=None if output == "all" else (output,),
        min_context=int(context) if context else None,
        max_prompt_price=0 if free else max_price_nanos,
        max_completion_price=0 if free else None,
        supported_parameters=params,
        providers=(provider,) if provider else (),
        authors=(author,) if author else (),
        sort=None if sort == "throughput-high-to-low" else sort,
    )
    state = {"q": q, "modality": modality, "output": output, "context": context, "max_price": max_price, "free": free,
             "params": params, "sort": sort, "provider": provider, "author": author}
    return filters, state


def _best_throughput(models: list[Model]) -> dict[str, float]:
    stats = endpoint_stats([e.id for m in models for e in m.active_endpoints])
    best: dict[str, float] = {}
    for model in models:
        values = [s.throughput_30m.p50 for e in model.active_endpoints if (s := stats.get(e.id)) and s.throughput_30m]
        if values:
            best[model.slug] = max(values)
    return best


def model_url(slug: str) -> str:
    author, _, name = slug.partition("/")
    return reverse("models:model", args=[author, name])


@require_GET
def models_page(request: HttpRequest) -> HttpResponse:
    try:
        filters, state = _page_filters(request.GET)
    except BadFilter as exc:
        return _bad(request, str(exc))
    models = selectors.model_list(filters=filters)
    if state["sort"] == "throughput-high-to-low":
        speed = _best_throughput(models)
        models.sort(key=lambda m: (m.slug not in speed, -speed.get(m.slug, 0)))  # no data: last
    rows = []
    for model in models:
        cheapest = selectors.model_cheapest_endpoint(model)
        rows.append({
            "model": model,
            "prompt": nanos_to_price_string(cheapest.price_prompt) if cheapest else "",
            "completion": nanos_to_price_string(cheapest.price_completion) if cheapest else "",
            "providers": len(model.active_endpoints),
            "url": model_url(model.slug),
        })
    everything = selectors.model_list(filters=selectors.ModelFilters(output_modalities=None))
    context = {
        "rows": rows,
        "state": state,
        "input_modalities": INPUT_MODALITIES,
        "contexts": CONTEXTS,
        "parameters": PARAMETERS,
        "sorts": SORTS,
        "providers": [(p.slug, p.name) for p in selectors.provider_list()],
        "authors": sorted({m.author for m in everything}),
    }
    return render(request, "routing/models.html", context)


@require_GET
def model_page(request: HttpRequest, author: str, slug: str) -> HttpResponse:
    if "\x00" in author or "\x00" in slug:
        raise Http404("No such model")
    model = selectors.model_endpoints(f"{author}/{slug}"[:200])
    if model is None:
        raise Http404("No such model")
    stats = endpoint_stats([e.id for e in model.active_endpoints])
    endpoints = []
    for e in model.active_endpoints:
        s = stats.get(e.id)
        endpoints.append({
            "endpoint": e,
            # Support staff declared it (or its provider) down: routing skips it, the API says status -10.
            "declared_outage": e.outage or e.provider.outage,
            "prompt": nanos_to_price_string(e.price_prompt),
            "completion": nanos_to_price_string(e.price_completion),
            "request": nanos_to_price_string(e.price_request) if e.price_request else "",
            "latency_p50": round(s.latency_30m.p50) if s and s.latency_30m else None,
            "throughput_p50": round(s.throughput_30m.p50, 1) if s and s.throughput_30m else None,
            "uptime_5m": s.uptime_5m if s else None,
            "uptime_30m": s.uptime_30m if s else None,
            "uptime_1d": s.uptime_1d if s else None,
        })
    variants = list(
        Model.objects.filter(active=True, canonical_slug=model.canonical_slug).exclude(slug=model.slug).values_list("slug", flat=True)
    )
    context = {
        "model": model,
        "endpoints": endpoints,
        "variants": variants,
        "dynamic_variants": ("nitro", "floor", "exacto", "online"),
        "parameters": selectors.model_supported_parameters(model),
        "base": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "routing/model.html", context)
