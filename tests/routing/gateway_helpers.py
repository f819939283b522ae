"""Helpers shared by the end-to-end routing tests (``test_routing_*.py``): requests through the live
gateway, generation records, seeded load balancing, published endpoint health, test-only models."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson

from activity.models import Generation
from billing.settlement import settlement_flush
from routing import catalog_cache
from routing.models import Endpoint, Model, Provider

HELLO = [{"role": "user", "content": "Say hello in five words."}]


def post(server, bundle, body: dict, *, headers: dict | None = None, path: str = "chat/completions") -> httpx.Response:
    """One non-streaming request, the body sent as given (no default provider preferences)."""
    body = {"messages": HELLO, **body}
    return httpx.post(f"{server.api}/{path}", json=body, headers={**bundle.headers, **(headers or {})}, timeout=30)


def stream(server, bundle, body: dict, *, headers: dict | None = None) -> tuple[httpx.Response, list]:
    """One streaming request: (the response, its closed; the parsed ``data:`` events, ``"[DONE]"`` last)."""
    body = {"messages": HELLO, **body, "stream": True}
    events: list = []
    with httpx.stream(
        "POST", f"{server.api}/chat/completions", json=body, headers={**bundle.headers, **(headers or {})}, timeout=30
    ) as response:
        if response.status_code != 200 or not response.headers["content-type"].startswith("text/event-stream"):
            response.read()
            return response, events
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line[6:]
                events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return response, events


def streamed_text(events: list) -> str:
    return "".join(
        (c["choices"][0].get("delta") or {}).get("content") or ""
        for c in events
        if isinstance(c, dict) and c.get("choices")
    )


def generation(generation_id: str) -> Generation:
    settlement_flush()
    return Generation.objects.get(id=generation_id)


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


def endpoints_of(slug: str) -> list[Endpoint]:
    """A model's active endpoints, cheapest first (the catalog cache's order)."""
    rows = list(Endpoint.objects.filter(model__slug=slug, active=True).select_related("provider"))
    rows.sort(key=lambda e: (e.price_prompt + e.price_completion, e.price_request, e.tag))
    return rows


def publish_health(predicate: Callable[[dict], bool] | None = None) -> dict:
    """Push this process's pending endpoint stats to the store and publish a fresh health snapshot now
    (the background thread does both every second or two), retrying until ``predicate`` holds."""
    from routing.stats import _health_encode, stats_engine

    engine = stats_engine()
    for _ in range(50):
        engine.flush()
        health = engine.compute_health()
        engine.store.blob_set("health", orjson.dumps({"at": time.time(), "data": _health_encode(health)}), 10)
        engine.health = health
        engine.health_at = time.monotonic()
        if predicate is None or predicate(health):
            return health
        time.sleep(0.05)
    raise AssertionError("the endpoint health never reached the expected state")


def make_test_model(
    slug: str,
    *,
    provider: str | Provider = "deepinfra",
    context_length: int = 131072,
    prompt: int = 100_000_000,
    completion: int = 200_000_000,
    input_modalities: tuple[str, ...] = ("text",),
    tag: str | None = None,
    supported_parameters: tuple[str, ...] = ("max_tokens", "temperature", "stop"),
) -> tuple[Model, Endpoint]:
    """A model with one endpoint (prices in nano-dollars per million tokens) added to the loaded catalog."""
    provider_row = provider if isinstance(provider, Provider) else Provider.objects.get(slug=provider)
    author = slug.split("/")[0]
    model, _ = Model.objects.get_or_create(
        slug=slug,
        defaults={
            "canonical_slug": slug,
            "author": author,
            "name": f"Test: {slug}",
            "created": 1_700_000_000,
            "context_length": context_length,
            "max_completion_tokens": None,
            "input_modalities": list(input_modalities),
            "output_modalities": ["text"],
        },
    )
    endpoint = Endpoint.objects.create(
        model=model,
        provider=provider_row,
        tag=tag or provider_row.slug,
        upstream_model_id=slug.split("/")[-1],
        price_prompt=prompt,
        price_completion=completion,
        context_length=context_length,
        supported_parameters=list(supported_parameters),
        input_modalities=list(input_modalities),
        output_modalities=["text"],
    )
    catalog_cache.invalidate()
    return model, endpoint
