"""Micro-benchmark: what one routing decision (``routing.selection.plan_route``) costs.

A five-provider model (prices, quantizations and data policies like the shipped catalog's
Llama 3.3 70B), live health for every endpoint, and the request parameters of a typical
chat call. Prints µs per call (best of several rounds) for a few preference sets, and for
``stats_record`` (the per-attempt statistics call on the hot path).

Run: ``.venv/bin/python bench/routing_decision.py [--calls 20000]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openrouter_site.settings")

import django  # noqa: E402

django.setup()

from routing.catalog_cache import EndpointEntry, ModelEntry  # noqa: E402
from routing.selection import plan_route, preferences_parse  # noqa: E402
from routing.stats import EndpointHealth, LocalStatsStore, Percentiles, StatsEngine  # noqa: E402

PARAMS = frozenset({"temperature", "max_tokens", "top_p", "tools", "tool_choice", "stream"})
SUPPORTED = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "tools", "tool_choice", "response_format"})


def five_provider_model() -> tuple[ModelEntry, dict[int, EndpointHealth]]:
    rows = [
        ("deepinfra/turbo", "deepinfra", 0.13, 0.39, "fp8", True),
        ("deepinfra", "deepinfra", 0.23, 0.40, "bf16", True),
        ("groq", "groq", 0.59, 0.79, "unknown", True),
        ("together", "together", 0.88, 0.88, "fp8", False),
        ("fireworks", "fireworks", 0.90, 0.90, "fp8", True),
    ]
    endpoints, health = [], {}
    for index, (tag, slug, prompt, completion, quantization, zdr) in enumerate(rows, start=1):
        endpoints.append(
            EndpointEntry(
                id=index, tag=tag, provider_slug=slug, provider_name=slug.title(), upstream_model_id="llama",
                base_url="http://127.0.0.1", api_key="k", is_simulated=True,
                price_prompt=int(prompt * 1e9), price_completion=int(completion * 1e9), price_request=0,
                price_cache_read=None, price_cache_write=None, context_length=131072, max_completion_tokens=16384,
                supported_parameters=SUPPORTED if index != 3 else SUPPORTED - {"tools"}, supports_cancellation=True,
                model_slug="meta-llama/llama-3.3-70b-instruct", quantization=quantization,
                trains_on_data=False, retains_prompts=not zdr, zdr=zdr,
            )
        )
        latency = Percentiles(200.0 + 50 * index, 260.0 + 50 * index, 400.0, 900.0)
        throughput = Percentiles(120.0 - 15 * index, 100.0 - 15 * index, 60.0, 20.0)
        health[index] = EndpointHealth(
            recently_failing=index == 4, p50_latency_ms=latency.p50, p50_throughput=throughput.p50, uptime_5m=99.0,
            latency_ms=latency, throughput=throughput, tool_call_success=0.9, tool_call_requests=50,
        )
    model = ModelEntry(slug="meta-llama/llama-3.3-70b-instruct", name="Llama", context_length=131072,
                       max_completion_tokens=16384, endpoints=tuple(endpoints))
    return model, health


def per_call_us(function, calls: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    model, health = five_provider_model()
    fallback = ModelEntry(slug="fallback/model", name="F", context_length=8192, max_completion_tokens=None,
                          endpoints=model.endpoints[:2])
    rng = random.Random(7)
    cases = {
        "default (price-weighted load balancing)": (preferences_parse(None), None, [model]),
        "sort=throughput": (preferences_parse({"sort": "throughput"}), None, [model]),
        ":nitro variant": (preferences_parse(None), "nitro", [model]),
        "order=[groq, deepinfra]": (preferences_parse({"order": ["groq", "deepinfra"]}), None, [model]),
        "filters (zdr, quantizations, max_price, ignore)": (
            preferences_parse({"zdr": True, "quantizations": ["fp8", "bf16"], "max_price": {"prompt": 1, "completion": 1},
                               "ignore": ["fireworks"]}),
            None,
            [model],
        ),
        "require_parameters + soft prefs": (
            preferences_parse({"require_parameters": True, "preferred_min_throughput": 80,
                               "preferred_max_latency": {"p90": 1}}),
            None,
            [model],
        ),
        "two models, sort {by: price, partition: none}": (
            preferences_parse({"sort": {"by": "price", "partition": "none"}}), None, [model, fallback]
        ),
    }
    print(f"plan_route, five-provider model, {args.calls} calls per round, best of 5 rounds:")
    for name, (prefs, variant, models) in cases.items():
        def call(prefs=prefs, variant=variant, models=models):
            return plan_route(models=models, preferences=prefs, request_params=PARAMS, variant=variant,
                              health=health, rng=rng)

        call()
        print(f"  {name:<48} {per_call_us(call, args.calls):6.2f} µs")
    engine = StatsEngine(LocalStatsStore("bench"))

    def record():
        engine.record(3, ok=True, status=200, ttft_ms=420.0, tokens_per_second=85.0)

    print(f"stats_record (one attempt)                         {per_call_us(record, args.calls):6.2f} µs")


if __name__ == "__main__":
    main()
