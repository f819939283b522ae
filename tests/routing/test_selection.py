"""routing.selection: parsing the provider object and the routing decision (plan_route)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from openrouter_site.errors import BadRequest
from routing.catalog_cache import EndpointEntry, ModelEntry, service_tier
from routing.selection import (
    ConstraintFiltered,
    MaxPrice,
    NoEndpoints,
    PrivacyRestricted,
    ProviderPreferences,
    RoutingError,
    plan_route,
    preferences_parse,
)
from routing.stats import EndpointHealth, Percentiles

ALL_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "tools", "tool_choice",
                        "response_format", "verbosity", "reasoning"})
BILLION = 10**9


def ep(id: int, tag: str, price: float = 1.0, *, params=ALL_PARAMS, quant: str | None = "fp8", zdr=True, trains=False,
       retains=False, request: float = 0, image: float = 0, name: str | None = None, prompt: float | None = None,
       completion: float | None = None) -> EndpointEntry:
    """An endpoint costing ``price`` USD per million tokens, prompt + completion (split 1:3)."""
    slug = tag.split("/")[0]
    prompt = price / 4 if prompt is None else prompt
    completion = price * 3 / 4 if completion is None else completion
    return EndpointEntry(
        id=id, tag=tag, provider_slug=slug, provider_name=name or slug.title(), upstream_model_id="m",
        base_url="http://sim", api_key="k", is_simulated=True,
        price_prompt=round(prompt * BILLION), price_completion=round(completion * BILLION),
        price_request=round(request * BILLION), price_cache_read=None, price_cache_write=None,
        context_length=8192, max_completion_tokens=None, supported_parameters=frozenset(params),
        supports_cancellation=True, model_slug="a/m", price_image=round(image * BILLION), quantization=quant,
        trains_on_data=trains, retains_prompts=retains, zdr=zdr, service_tier=service_tier(tag),
    )


def model(slug: str, *endpoints: EndpointEntry) -> ModelEntry:
    return ModelEntry(slug=slug, name=slug, context_length=8192, max_completion_tokens=None,
                      endpoints=tuple(sorted(endpoints, key=lambda e: e.price_prompt + e.price_completion)))


def health(*, failing=False, tps: float | None = None, latency: float | None = None, tool: float | None = None,
           tool_requests: int = 0) -> EndpointHealth:
    """p50s as given; the other percentiles spread out from them (throughput falls, latency rises)."""
    tp = Percentiles(tps, tps * 0.8, tps * 0.6, tps * 0.3) if tps is not None else None
    lat = Percentiles(latency, latency * 1.5, latency * 2, latency * 4) if latency is not None else None
    return EndpointHealth(recently_failing=failing, p50_latency_ms=latency, p50_throughput=tps, uptime_5m=100.0,
                          latency_ms=lat, throughput=tp, tool_call_success=tool, tool_call_requests=tool_requests)


def tags(plan) -> list[str]:
    return [e.tag for e in plan.attempts]


def route(models, prefs=None, **kwargs):
    if isinstance(models, ModelEntry):
        models = [models]
    if not isinstance(prefs, ProviderPreferences):
        prefs = preferences_parse(prefs)
    kwargs.setdefault("rng", random.Random(1))
    return plan_route(models=models, preferences=prefs, **kwargs)


A, B, C = ep(1, "alpha", 1.0), ep(2, "beta", 2.0), ep(3, "gamma", 3.0)
ABC = model("a/m", A, B, C)


# --- parsing the provider object -----------------------------------------------------------------------------


def test_defaults():
    prefs = preferences_parse(None)
    assert prefs == ProviderPreferences()
    assert prefs.allow_fallbacks and not prefs.require_parameters and prefs.data_collection == "allow"
    assert prefs.partition == "model" and prefs.sort is None and prefs.max_price is None
    assert preferences_parse({}) == prefs
    assert preferences_parse({"order": None, "sort": None, "zdr": None, "max_price": None}) == prefs


def test_every_field_parses():
    prefs = preferences_parse(
        {
            "order": ["DeepInfra", "groq/fast"],
            "allow_fallbacks": False,
            "require_parameters": True,
            "data_collection": "deny",
            "zdr": True,
            "enforce_distillable_text": True,
            "only": ["groq", "deepinfra"],
            "ignore": ["fireworks"],
            "quantizations": ["fp8", "bf16"],
            "sort": {"by": "throughput", "partition": "none"},
            "max_price": {"prompt": 1, "completion": "2.5", "request": 0.001, "image": "0.01", "audio": 1},
            "preferred_min_throughput": {"p50": 100, "p90": 50, "p99": None},
            "preferred_max_latency": 2.5,
        }
    )
    assert prefs.order == ("deepinfra", "groq/fast")
    assert not prefs.allow_fallbacks and prefs.require_parameters and prefs.data_collection == "deny" and prefs.zdr
    assert prefs.only == ("groq", "deepinfra") and prefs.ignore == ("fireworks",)
    assert prefs.quantizations == frozenset({"fp8", "bf16"})
    assert prefs.sort == "throughput" and prefs.partition == "none"
    assert prefs.max_price == MaxPrice(prompt=BILLION, completion=2_500_000_000, request=1_000_000, image=10_000_000)
    assert prefs.preferred_min_throughput == (("p50", 100.0), ("p90", 50.0))
    assert prefs.preferred_max_latency_ms == (("p50", 2500.0),)


def test_sort_string_and_route_alias():
    assert preferences_parse({"sort": "price"}).sort == "price"
    assert preferences_parse({"sort": {"by": "latency"}}).partition == "model"
    assert preferences_parse(None, route="sort").partition == "none"
    assert preferences_parse(None, route="fallback").partition == "model"
    assert preferences_parse({"sort": "price"}, route="sort").partition == "none"
    assert preferences_parse({"sort": {"by": "price", "partition": "model"}}, route="sort").partition == "model"
    assert preferences_parse({"quantizations": []}).quantizations is None
    assert preferences_parse({"preferred_max_latency": {"p90": 1}}).preferred_max_latency_ms == (("p90", 1000.0),)


@pytest.mark.parametrize(
    ("provider", "route_value", "names"),
    [
        ("deepinfra", None, "'provider' must be an object"),
        ({"orderr": ["x"]}, None, "provider.orderr"),
        ({"order": "deepinfra"}, None, "provider.order"),
        ({"order": ["ok", ""]}, None, "provider.order"),
        ({"only": [1]}, None, "provider.only"),
        ({"ignore": {"a": 1}}, None, "provider.ignore"),
        ({"allow_fallbacks": "no"}, None, "provider.allow_fallbacks"),
        ({"require_parameters": 1}, None, "provider.require_parameters"),
        ({"zdr": "true"}, None, "provider.zdr"),
        ({"data_collection": "maybe"}, None, "provider.data_collection"),
        ({"quantizations": ["fp7"]}, None, "provider.quantizations"),
        ({"quantizations": "fp8"}, None, "provider.quantizations"),
        ({"sort": "fastest"}, None, "provider.sort"),
        ({"sort": {"by": "speed"}}, None, "provider.sort"),
        ({"sort": {"by": "price", "partition": "all"}}, None, "provider.sort.partition"),
        ({"sort": {"by": "price", "order": "asc"}}, None, "provider.sort.order"),
        ({"max_price": 5}, None, "provider.max_price"),
        ({"max_price": {"prompt": -1}}, None, "provider.max_price.prompt"),
        ({"max_price": {"completion": "cheap"}}, None, "provider.max_price.completion"),
        ({"max_price": {"tokens": 1}}, None, "provider.max_price.tokens"),
        ({"max_price": {"request": True}}, None, "provider.max_price.request"),
        ({"preferred_min_throughput": "fast"}, None, "provider.preferred_min_throughput"),
        ({"preferred_min_throughput": {"p95": 10}}, None, "provider.preferred_min_throughput"),
        ({"preferred_max_latency": {"p50": -1}}, None, "provider.preferred_max_latency.p50"),
        ({"preferred_max_latency": True}, None, "provider.preferred_max_latency"),
        (None, "fastest", "'route'"),
    ],
)
def test_bad_preferences_are_400(provider, route_value, names):
    with pytest.raises(BadRequest) as raised:
        preferences_parse(provider, route=route_value)
    assert raised.value.status == 400
    assert names in raised.value.message


# --- default: price-weighted load balancing -----------------------------------------------------------------


def test_inverse_square_price_weighting():
    """$1/$2/$3: chosen first with probabilities 1 : 1/4 : 1/9 = 36/49, 9/49, 4/49."""
    draws = 30_000
    rng = random.Random(20240611)
    counts = Counter(route(ABC, rng=rng).attempts[0].tag for _ in range(draws))
    expected = {"alpha": 36 / 49, "beta": 9 / 49, "gamma": 4 / 49}
    chi_square = sum((counts[t] - draws * p) ** 2 / (draws * p) for t, p in expected.items())
    assert chi_square < 13.82, (counts, chi_square)  # df = 2, p = 0.001
    for tag, p in expected.items():
        sigma = (p * (1 - p) / draws) ** 0.5
        assert abs(counts[tag] / draws - p) < 4 * sigma, (tag, counts[tag] / draws, p)
    assert 8.3 < counts["alpha"] / counts["gamma"] < 9.7, "A is chosen about 9x as often as C"


def test_the_rest_follow_cheapest_first():
    seen = set()
    rng = random.Random(5)
    for _ in range(300):
        plan = route(ABC, rng=rng)
        first, rest = plan.attempts[0], plan.attempts[1:]
        assert sorted(rest, key=lambda e: e.price_prompt) == rest and first not in rest and len(plan.attempts) == 3
        seen.add(first.tag)
        assert plan.load_balanced and plan.sort is None
    assert seen == {"alpha", "beta", "gamma"}


def test_recently_failing_providers_are_not_drawn_and_go_last():
    """The docs' example: B had outages, so A first (usually), then C, then B."""
    sick = {B.id: health(failing=True)}
    rng = random.Random(3)
    firsts = Counter()
    for _ in range(2000):
        plan = route(ABC, health=sick, rng=rng)
        firsts[plan.attempts[0].tag] += 1
        assert plan.attempts[-1].tag == "beta"
    assert firsts["beta"] == 0
    assert 0.86 < firsts["alpha"] / 2000 < 0.94  # 1 : 1/9
    assert tags(route(ABC, health=sick, rng=random.Random(0))) in (["alpha", "gamma", "beta"], ["gamma", "alpha", "beta"])


def test_when_everything_is_failing_the_draw_is_among_all():
    sick = {e.id: health(failing=True) for e in (A, B, C)}
    firsts = Counter(route(ABC, health=sick, rng=random.Random(i)).attempts[0].tag for i in range(300))
    assert set(firsts) == {"alpha", "beta", "gamma"}


def test_free_endpoints_are_drawn_uniformly_and_before_paid_ones():
    free1, free2 = ep(11, "free-one", 0.0), ep(12, "free-two", 0.0)
    mixed = model("a/m", free1, free2, A)
    rng = random.Random(9)
    firsts = Counter(route(mixed, rng=rng).attempts[0].tag for _ in range(4000))
    assert firsts["alpha"] == 0
    assert abs(firsts["free-one"] - firsts["free-two"]) < 250
    assert tags(route(mixed, rng=rng))[-1] == "alpha"


def test_a_single_endpoint_needs_no_draw():
    class NoRandom(random.Random):
        def random(self):
            raise AssertionError("no draw needed")

    assert tags(route(model("a/m", A), rng=NoRandom())) == ["alpha"]


# --- sort, variants ------------------------------------------------------------------------------------------

FAST = {A.id: health(tps=50, latency=900, tool=0.70, tool_requests=40),
        B.id: health(tps=200, latency=300, tool=0.99, tool_requests=40),
        C.id: health(tps=120, latency=150, tool=0.99, tool_requests=40)}


@pytest.mark.parametrize(
    ("prefs", "variant", "expected"),
    [
        ({"sort": "price"}, None, ["alpha", "beta", "gamma"]),
        ({"sort": "throughput"}, None, ["beta", "gamma", "alpha"]),
        ({"sort": "latency"}, None, ["gamma", "beta", "alpha"]),
        ({"sort": "exacto"}, None, ["beta", "gamma", "alpha"]),  # tool success ties -> faster first
        ({"sort": {"by": "latency", "partition": "model"}}, None, ["gamma", "beta", "alpha"]),
        (None, "nitro", ["beta", "gamma", "alpha"]),
        (None, "floor", ["alpha", "beta", "gamma"]),
        (None, "exacto", ["beta", "gamma", "alpha"]),
        ({"sort": "price"}, "exacto", ["alpha", "beta", "gamma"]),  # an explicit sort wins
        ({"sort": "latency"}, "nitro", ["gamma", "beta", "alpha"]),
    ],
)
def test_sorts_and_variants_are_deterministic(prefs, variant, expected):
    for seed in range(5):
        plan = route(ABC, prefs, variant=variant, health=FAST, rng=random.Random(seed))
        assert tags(plan) == expected
        assert not plan.load_balanced


def test_unmeasured_endpoints_sort_after_measured_ones():
    partial = {C.id: health(tps=10, latency=5000)}
    assert tags(route(ABC, {"sort": "throughput"}, health=partial)) == ["gamma", "alpha", "beta"]
    assert tags(route(ABC, {"sort": "latency"}, health=partial)) == ["gamma", "alpha", "beta"]


def test_exacto_needs_enough_tool_calls_to_trust_the_rate():
    few = {A.id: health(tool=1.0, tool_requests=2, tps=10), B.id: health(tool=0.6, tool_requests=30, tps=10)}
    assert tags(route(ABC, variant="exacto", health=few)) == ["beta", "alpha", "gamma"]


def test_sorted_order_is_strict_even_for_failing_endpoints():
    sick = {A.id: health(failing=True)}
    assert tags(route(ABC, {"sort": "price"}, health=sick)) == ["alpha", "beta", "gamma"]


def test_service_tiers_join_only_under_nitro_and_floor():
    priority, flex = ep(21, "openai/priority", 8.0), ep(22, "openai/flex", 0.5)
    base = ep(20, "openai", 4.0)
    tiers = model("openai/gpt", base, priority, flex)
    tiered = {priority.id: health(tps=300), base.id: health(tps=100)}
    assert tags(route(tiers, {"sort": "price"})) == ["openai"]
    assert tags(route(tiers, variant="nitro", health=tiered)) == ["openai/priority", "openai"]
    assert tags(route(tiers, variant="floor")) == ["openai/flex", "openai"]
    # A base slug never matches a tier; the full tag does (and makes it eligible).
    assert tags(route(tiers, {"order": ["openai"], "allow_fallbacks": False}, variant="nitro")) == ["openai"]
    assert tags(route(tiers, {"ignore": ["openai"]}, variant="nitro")) == ["openai/priority"]
    assert tags(route(tiers, {"order": ["openai/flex"], "allow_fallbacks": False})) == ["openai/flex"]


# --- order, allow_fallbacks, only, ignore ----------------------------------------------------------------------

DI_TURBO, DI, GROQ, TOGETHER, FIREWORKS = (
    ep(31, "deepinfra/turbo", 0.52, quant="fp8"),
    ep(32, "deepinfra", 0.63, quant="bf16"),
    ep(33, "groq", 1.38, quant=None, params=ALL_PARAMS - {"tools", "tool_choice"}, name="Groq"),
    ep(34, "together", 1.76, quant="fp8", zdr=False, retains=True),
    ep(35, "fireworks", 1.80, quant="fp16", zdr=False, trains=True, retains=True),
)
LLAMA = model("meta-llama/llama", DI_TURBO, DI, GROQ, TOGETHER, FIREWORKS)


def test_order_lists_providers_first_then_the_rest_cheapest_first():
    plan = route(LLAMA, {"order": ["groq", "deepinfra"]})
    assert tags(plan) == ["groq", "deepinfra/turbo", "deepinfra", "together", "fireworks"]
    assert not plan.load_balanced
    # Same every time: order disables load balancing.
    assert {tuple(tags(route(LLAMA, {"order": ["groq"]}, rng=random.Random(s)))) for s in range(20)} == {
        ("groq", "deepinfra/turbo", "deepinfra", "together", "fireworks")
    }


def test_order_full_tags_match_exactly_and_display_names_match():
    assert tags(route(LLAMA, {"order": ["deepinfra/turbo"], "allow_fallbacks": False})) == ["deepinfra/turbo"]
    assert tags(route(LLAMA, {"order": ["deepinfra"], "allow_fallbacks": False})) == ["deepinfra/turbo", "deepinfra"]
    assert tags(route(LLAMA, {"order": ["Groq"], "allow_fallbacks": False})) == ["groq"]


def test_order_skips_providers_that_do_not_serve_the_model():
    assert tags(route(LLAMA, {"order": ["openai", "fireworks"]}))[:2] == ["fireworks", "deepinfra/turbo"]


def test_order_without_fallbacks_and_no_match_is_constraint_filtered():
    with pytest.raises(ConstraintFiltered) as raised:
        route(LLAMA, {"order": ["openai"], "allow_fallbacks": False})
    assert raised.value.availability["constraint"]["field"] == "allowed_providers"


def test_no_fallbacks_keeps_only_the_primary_choice():
    plan = route(LLAMA, {"allow_fallbacks": False}, rng=random.Random(4))
    assert len(plan.attempts) == 1
    assert tags(route(LLAMA, {"allow_fallbacks": False, "sort": "price"})) == ["deepinfra/turbo"]


def test_order_is_kept_with_a_sort_for_the_rest():
    fast = {FIREWORKS.id: health(tps=500), TOGETHER.id: health(tps=100)}
    plan = route(LLAMA, {"order": ["groq"], "sort": "throughput"}, health=fast)
    assert tags(plan)[:3] == ["groq", "fireworks", "together"]


def test_only_and_ignore():
    assert set(tags(route(LLAMA, {"only": ["deepinfra", "groq"]}))) == {"deepinfra/turbo", "deepinfra", "groq"}
    assert set(tags(route(LLAMA, {"only": ["deepinfra/turbo"]}))) == {"deepinfra/turbo"}
    assert set(tags(route(LLAMA, {"ignore": ["deepinfra", "fireworks"]}))) == {"groq", "together"}
    assert set(tags(route(LLAMA, {"ignore": ["deepinfra/turbo"]}))) == {"deepinfra", "groq", "together", "fireworks"}


@pytest.mark.parametrize("prefs", [{"only": ["openai"]}, {"ignore": ["deepinfra", "groq", "together", "fireworks"]}])
def test_allowed_providers_leaving_nothing_is_404(prefs):
    with pytest.raises(ConstraintFiltered) as raised:
        route(LLAMA, prefs)
    error = raised.value
    assert error.status == 404
    assert error.availability["code"] == "constraint_filtered"
    assert error.availability["excluded_by"] == ["allowed_providers"]
    assert error.availability["constraint"]["field"] == "allowed_providers"
    assert error.availability["requested_models"] == ["meta-llama/llama"]


# --- hard filters: quantization, privacy, max_price, parameters -------------------------------------------------


def test_quantizations():
    assert set(tags(route(LLAMA, {"quantizations": ["fp8"]}))) == {"deepinfra/turbo", "together"}
    assert set(tags(route(LLAMA, {"quantizations": ["unknown"]}))) == {"groq"}  # null counts as unknown
    with pytest.raises(ConstraintFiltered) as raised:
        route(LLAMA, {"quantizations": ["int4"]})
    assert raised.value.availability["constraint"]["field"] == "quantization"
    assert "int4" in raised.value.availability["constraint"]["detail"]


def test_data_collection_deny_drops_training_and_retaining_providers():
    assert set(tags(route(LLAMA, {"data_collection": "deny"}))) == {"deepinfra/turbo", "deepinfra", "groq"}
    retains_only = ep(41, "keeper", 1.0, zdr=False, trains=False, retains=True)
    with pytest.raises(PrivacyRestricted) as raised:
        route(model("a/m", retains_only), {"data_collection": "deny"})
    assert raised.value.availability["code"] == "privacy_restricted"
    assert raised.value.availability["excluded_by"] == ["data_policy:training"]
    assert "constraint" not in raised.value.availability


def test_zdr():
    assert set(tags(route(LLAMA, {"zdr": True}))) == {"deepinfra/turbo", "deepinfra", "groq"}
    with pytest.raises(PrivacyRestricted) as raised:
        route(model("a/m", TOGETHER, FIREWORKS), {"zdr": True})
    assert raised.value.availability["excluded_by"] == ["data_policy:zdr"]


def test_max_price_is_a_hard_filter():
    pricey = ep(51, "pricey", prompt=0.5, completion=5.0)
    per_request = ep(52, "perreq", prompt=0.5, completion=0.5, request=0.005)
    with_images = ep(53, "images", prompt=0.5, completion=0.5, image=0.01)
    m = model("a/m", pricey, per_request, with_images)
    assert set(tags(route(m, {"max_price": {"completion": 1}}))) == {"perreq", "images"}
    assert set(tags(route(m, {"max_price": {"prompt": 0.5, "request": "0.001"}}))) == {"pricey", "images"}
    assert set(tags(route(m, {"max_price": {"image": 0.001}}))) == {"pricey", "perreq"}
    with pytest.raises(ConstraintFiltered) as raised:
        route(m, {"max_price": {"prompt": 0.1}})
    assert raised.value.availability["constraint"]["field"] == "max_price"
    assert raised.value.availability["excluded_by"] == ["max_price"]


def test_require_parameters_keeps_only_endpoints_supporting_all():
    params = {"tools", "temperature", "messages", "model"}
    plan = route(LLAMA, {"require_parameters": True}, request_params=params)
    assert "groq" not in tags(plan) and len(plan.attempts) == 4
    assert plan.dropped_params == {}
    # Aliases: max_completion_tokens is served as max_tokens.
    assert len(route(LLAMA, {"require_parameters": True}, request_params={"max_completion_tokens"}).attempts) == 5
    with pytest.raises(ConstraintFiltered) as raised:
        route(LLAMA, {"require_parameters": True}, request_params={"logprobs", "temperature"})
    assert raised.value.availability["constraint"] == {
        "field": "require_parameters",
        "detail": "no endpoint supports all of: logprobs, temperature",
    }


def test_unsupported_parameters_are_listed_per_endpoint_to_drop():
    plan = route(LLAMA, {"sort": "price"}, request_params={"logprobs", "temperature", "stream", "messages"})
    assert plan.dropped_params == {e.id: frozenset({"logprobs"}) for e in LLAMA.endpoints}


# --- soft requirements and soft preferences ----------------------------------------------------------------------


def test_tools_go_to_endpoints_that_support_them_when_any_do():
    plan = route(LLAMA, {"sort": "price"}, request_params={"tools", "tool_choice"})
    assert "groq" not in tags(plan) and len(plan.attempts) == 4
    only_groq = model("a/m", GROQ)
    plan = route(only_groq, request_params={"tools"})
    assert tags(plan) == ["groq"] and plan.dropped_params == {GROQ.id: frozenset({"tools"})}


@pytest.mark.parametrize("parameter", ["response_format", "verbosity"])
def test_response_format_and_verbosity_are_soft_requirements(parameter):
    supporting = ep(61, "yes", 5.0)
    other = ep(62, "no", 1.0, params=ALL_PARAMS - {parameter})
    m = model("a/m", supporting, other)
    assert tags(route(m, request_params={parameter})) == ["yes"]
    assert tags(route(m, {"sort": "price"})) == ["no", "yes"]


def test_preferred_min_throughput_moves_slow_endpoints_to_the_end():
    speeds = {A.id: health(tps=20), B.id: health(tps=150)}  # C unmeasured: not penalised
    assert tags(route(ABC, {"sort": "price", "preferred_min_throughput": 100}, health=speeds)) == [
        "beta", "gamma", "alpha"
    ]
    # Percentile cutoffs: B's p90 is 90 tokens/s.
    plan = route(ABC, {"sort": "price", "preferred_min_throughput": {"p90": 100}}, health=speeds)
    assert tags(plan) == ["gamma", "alpha", "beta"]


def test_preferred_max_latency_is_in_seconds():
    latencies = {A.id: health(latency=3000), B.id: health(latency=800)}
    assert tags(route(ABC, {"sort": "price", "preferred_max_latency": 1}, health=latencies)) == [
        "beta", "gamma", "alpha"
    ]
    # p90 = 2 x p50 here: B's p90 (1.6 s) misses a 1.5 s cutoff.
    assert tags(route(ABC, {"sort": "price", "preferred_max_latency": {"p90": 1.5}}, health=latencies)) == [
        "gamma", "alpha", "beta"
    ]


def test_load_balancing_draws_among_endpoints_meeting_soft_preferences():
    speeds = {A.id: health(tps=20)}
    firsts = Counter(
        route(ABC, {"preferred_min_throughput": 100}, health=speeds, rng=random.Random(s)).attempts[0].tag
        for s in range(500)
    )
    assert firsts["alpha"] == 0 and firsts["beta"] > firsts["gamma"] > 0


def test_soft_preferences_can_put_a_fallback_model_first():
    slow_primary = model("a/primary", ep(71, "slowco", 1.0))
    fast_fallback = model("b/fallback", ep(72, "fastco", 9.0))
    speeds = {71: health(tps=10), 72: health(tps=300)}
    plan = route([slow_primary, fast_fallback], {"preferred_min_throughput": 100}, health=speeds)
    assert tags(plan) == ["fastco", "slowco"]


# --- models fallback and partition ----------------------------------------------------------------------------------

PRIMARY = model("a/primary", ep(81, "p-cheap", 2.0), ep(82, "p-dear", 8.0))
FALLBACK = model("b/fallback", ep(91, "f-cheap", 1.0), ep(92, "f-dear", 4.0))


def test_partition_model_keeps_each_models_endpoints_together():
    plan = route([PRIMARY, FALLBACK], {"sort": "price"})
    assert tags(plan) == ["p-cheap", "p-dear", "f-cheap", "f-dear"]
    assert [e.id for e in plan.attempts[:2]] == [81, 82]


@pytest.mark.parametrize(
    ("prefs", "route_value"),
    [({"sort": {"by": "price", "partition": "none"}}, None), ({"sort": "price"}, "sort")],
)
def test_partition_none_sorts_all_models_together(prefs, route_value):
    parsed = preferences_parse(prefs, route=route_value)
    assert tags(route([PRIMARY, FALLBACK], parsed)) == ["f-cheap", "p-cheap", "f-dear", "p-dear"]


def test_a_filtered_out_primary_falls_through_to_the_fallback_model():
    plan = route([PRIMARY, FALLBACK], {"ignore": ["p-cheap", "p-dear"]})
    assert {e.tag for e in plan.attempts} == {"f-cheap", "f-dear"}


def test_when_every_model_is_filtered_the_primarys_reason_is_reported():
    with pytest.raises(ConstraintFiltered) as raised:
        route([PRIMARY, FALLBACK], {"max_price": {"prompt": 0.01}})
    assert raised.value.availability["requested_models"] == ["a/primary", "b/fallback"]
    assert raised.value.availability["constraint"]["field"] == "max_price"


def test_no_endpoints():
    with pytest.raises(NoEndpoints) as raised:
        route(model("a/empty"))
    assert raised.value.status == 404 and raised.value.availability["code"] == "no_endpoints"
    with pytest.raises(NoEndpoints):
        route([])


def test_free_variant_keeps_free_endpoints():
    free = ep(13, "freebie", 0.0)
    assert tags(route(model("a/m", A, free), variant="free")) == ["freebie"]
    with pytest.raises(NoEndpoints):
        route(ABC, variant="free")


# --- sticky routing ------------------------------------------------------------------------------------------------


def test_sticky_endpoint_goes_first():
    for seed in range(30):
        assert route(ABC, sticky_endpoint_id=C.id, rng=random.Random(seed)).attempts[0].tag == "gamma"
    assert tags(route(ABC, {"sort": "price"}, sticky_endpoint_id=C.id)) == ["gamma", "alpha", "beta"]


def test_sticky_is_ignored_when_failing_filtered_or_with_order():
    sick = {C.id: health(failing=True)}
    assert route(ABC, health=sick, sticky_endpoint_id=C.id).attempts[-1].tag == "gamma"
    assert "gamma" not in tags(route(ABC, {"ignore": ["gamma"]}, sticky_endpoint_id=C.id))
    assert route(ABC, {"order": ["beta"]}, sticky_endpoint_id=C.id).attempts[0].tag == "beta"
    assert route([PRIMARY, FALLBACK], {"sort": "price"}, sticky_endpoint_id=92).attempts[0].tag == "p-cheap"


# --- the error envelope ------------------------------------------------------------------------------------------


def test_routing_errors_carry_the_availability_payload():
    with pytest.raises(RoutingError) as raised:
        route(LLAMA, {"quantizations": ["int4"]})
    body = raised.value.body()
    error = body["error"]
    assert error["code"] == 404 and error["http_status"] == 404 and error["error_type"] == "not_found"
    assert error["availability"] == error["metadata"]["availability"]
    assert error["availability"]["code"] == "constraint_filtered" and error["availability"]["retryable"] is False
    assert error["availability"]["docs_url"].startswith("https://openrouter.ai/docs/")
    assert "message" in error and error["message"]


# --- the catalog snapshot carries what selection needs ---------------------------------------------------------------


def test_catalog_snapshot_carries_data_policy_quantization_and_prices(db):
    import json

    from routing import catalog_cache
    from routing.services import DEFAULT_CATALOG_PATH, catalog_load

    catalog_load(data=json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8")))
    models = catalog_cache._build().models
    llama = models["meta-llama/llama-3.3-70b-instruct"]
    by_tag = {e.tag: e for e in llama.endpoints}
    assert by_tag["deepinfra/turbo"].quantization == "fp8" and by_tag["deepinfra/turbo"].zdr
    assert by_tag["deepinfra/turbo"].service_tier is None and by_tag["deepinfra/turbo"].model_slug == llama.slug
    assert by_tag["groq"].quantization == "unknown"
    gpt4o = models["openai/gpt-4o"].endpoints[0]
    assert gpt4o.price_image == 3_613_000 and gpt4o.quantization is None
    assert gpt4o.retains_prompts and not gpt4o.trains_on_data and not gpt4o.zdr
    deepseek = {e.provider_slug: e for e in models["deepseek/deepseek-chat-v3-0324"].endpoints}["deepseek"]
    assert deepseek.trains_on_data

    plan = plan_route(models=[llama], preferences=preferences_parse({"zdr": True, "order": ["deepinfra"]}))
    assert [e.tag for e in plan.attempts][:2] == ["deepinfra/turbo", "deepinfra"]
    assert all(e.zdr for e in plan.attempts)
    with pytest.raises(PrivacyRestricted):
        plan_route(models=[models["openai/gpt-4o"]], preferences=preferences_parse({"data_collection": "deny"}))
