"""openrouter/auto and openrouter/free (routing.routers)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest
from django.conf import settings

from openrouter_site.errors import BadRequest, NotFound
from routing.routers import (
    CATEGORIES,
    LONG_CONTEXT_TOKENS,
    NO_MATCH,
    auto_route,
    classify,
    free_route,
    request_needs,
)
from routing.services import DEFAULT_CATALOG_PATH


def ask(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


# --- the classifier ----------------------------------------------------------------------------


def test_image_parts_mean_vision():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Write python code for this"},
                                                      {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
            "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert classify(body) == "vision"  # vision wins over tools and code


def test_tools_mean_tool_use():
    assert classify(ask("What's the weather in Paris?", tools=[{"type": "function", "function": {"name": "w"}}])) == "tool_use"
    assert classify(ask("hi", functions=[{"name": "w"}])) == "tool_use"
    assert classify(ask("hi", tools=[])) == "chat"


def test_a_long_prompt_means_long_context():
    text = " ".join(["word"] * (LONG_CONTEXT_TOKENS + 10))
    assert classify(ask(text + "\n```python\nprint(1)\n```")) == "long_context"
    assert classify(ask(" ".join(["word"] * (LONG_CONTEXT_TOKENS - 100)))) == "chat"


@pytest.mark.parametrize(
    "text",
    [
        "Fix this:\n```\nx = 1\n```",
        "Traceback (most recent call last):\n  File \"a.py\", line 1",
        "def add(a, b):\n    return a + b\nwhy does this fail?",
        "function render() { return null; }",
        "const total = items.reduce((a, b) => a + b)",
        "SELECT name FROM users WHERE id = 3",
        "Write a Python script that renames files",
        "How do I refactor this class to remove the bug?",
    ],
)
def test_code_rules(text):
    assert classify(ask(text)) == "code"


@pytest.mark.parametrize(
    "text",
    [
        r"Evaluate \int_0^1 x^2 dx",
        "What is 17 * 23?",
        "Solve for x: 3x + 5 = 20",
        "Prove that the square root of two is irrational",
        "Find the derivative of sin(x) cos(x)",
        "Compute the eigenvalues of this matrix",
        "If $x^2 = 4$, what is x?",
    ],
)
def test_maths_rules(text):
    assert classify(ask(text)) == "maths"


@pytest.mark.parametrize(
    "text",
    [
        "Tell me a story about a dragon",
        "What did the prime minister say yesterday?",  # one weak maths word is not enough
        "The tickets cost $5 and $10",  # dollar amounts are not LaTeX
        "hello",
    ],
)
def test_everything_else_is_chat(text):
    assert classify(ask(text)) == "chat"


def test_only_the_last_user_message_is_scored():
    body = {"messages": [{"role": "user", "content": "```python\nprint(1)\n```"}, {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": "Thanks! Now tell me a joke"}]}
    assert classify(body) == "chat"
    assert classify({"messages": []}) == "chat"


def test_a_tie_goes_to_code():
    assert classify(ask("Write a python function computing 2 * 3")) == "code"


# --- openrouter/auto ------------------------------------------------------------------------------


POOL = {
    "code": ["anthropic/claude-sonnet-4", "openai/gpt-4.1", "mistralai/codestral-2501"],
    "chat": ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"],
}


def test_the_pool_of_the_category_in_order():
    assert auto_route(ask("Debug this python code"), pool=POOL) == ("code", POOL["code"])
    assert auto_route(ask("hello"), pool=POOL) == ("chat", POOL["chat"])
    # A category with no pool falls back to chat's.
    assert auto_route(ask("What is 2+2?"), pool=POOL) == ("maths", POOL["chat"])


def test_allowed_and_excluded_globs():
    body = ask("Debug this python code", plugins=[{"id": "auto-router", "allowed_models": ["anthropic/*", "openai/gpt-4.1"]}])
    assert auto_route(body, pool=POOL)[1] == ["anthropic/claude-sonnet-4", "openai/gpt-4.1"]
    body = ask("Debug this python code", plugins=[{"id": "auto-router", "excluded_models": ["anthropic/*"]}])
    assert auto_route(body, pool=POOL)[1] == ["openai/gpt-4.1", "mistralai/codestral-2501"]


def test_allowed_models_outside_the_pool():
    body = ask("hello", plugins=[{"id": "auto-router", "allowed_models": ["mistralai/*", "x-ai/grok-3"]}])
    # Without the catalog only literal slugs can be added; with it, globs expand over it.
    assert auto_route(body, pool=POOL)[1] == ["x-ai/grok-3"]
    available = {"mistralai/mistral-nemo", "mistralai/codestral-2501", "x-ai/grok-3", "openai/gpt-4o-mini"}
    assert auto_route(body, pool=POOL, available=available)[1] == [
        "mistralai/codestral-2501", "mistralai/mistral-nemo", "x-ai/grok-3"
    ]


def test_pool_models_missing_from_the_catalog_are_skipped():
    assert auto_route(ask("hello"), pool=POOL, available={"anthropic/claude-3.5-haiku"})[1] == ["anthropic/claude-3.5-haiku"]


def test_nothing_left_is_a_404():
    body = ask("hello", plugins=[{"id": "auto-router", "allowed_models": ["google/*"]}])
    with pytest.raises(NotFound) as caught:
        auto_route(body, pool=POOL)
    assert caught.value.status == 404 and caught.value.message == NO_MATCH == "No models match your request and model restrictions"
    with pytest.raises(NotFound):
        auto_route(ask("hello", plugins=[{"id": "auto-router", "excluded_models": ["*"]}]), pool=POOL)


def test_a_disabled_plugin_restricts_nothing_and_bad_lists_are_400():
    body = ask("hello", plugins=[{"id": "auto-router", "enabled": False, "allowed_models": ["google/*"]}])
    assert auto_route(body, pool=POOL)[1] == POOL["chat"]
    with pytest.raises(BadRequest):
        auto_route(ask("hello", plugins=[{"id": "auto-router", "allowed_models": "anthropic/*"}]), pool=POOL)


def test_the_configured_pool_uses_the_shipped_catalog_and_fits_each_category():
    catalog = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    models = {m["id"]: m for m in catalog["models"]}
    pool = settings.AUTO_ROUTER_POOL
    assert set(pool) == set(CATEGORIES)
    for category, slugs in pool.items():
        assert slugs, category
        for slug in slugs:
            assert slug in models, slug
            params = {p for e in models[slug]["endpoints"] for p in e["supported_parameters"]}
            if category == "vision":
                assert "image" in models[slug]["input_modalities"], slug
            if category == "tool_use":
                assert "tools" in params, slug
            if category == "long_context":
                assert models[slug]["context_length"] >= 1_000_000, slug
    assert auto_route(ask("hello")) == ("chat", pool["chat"])  # the setting is the default pool


# --- openrouter/free --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    is_free: bool
    supported_parameters: frozenset = frozenset()


@dataclass(frozen=True)
class Model:
    slug: str
    endpoints: tuple
    input_modalities: tuple = ("text",)
    extra: dict = field(default_factory=dict)


TOOLS = frozenset({"tools", "tool_choice"})
JSON = frozenset({"response_format"})
CANDIDATES = [
    Model("meta-llama/llama-3.3-70b-instruct:free", (Endpoint(True, TOOLS | JSON),)),
    Model("google/gemma-3-27b-it:free", (Endpoint(True),), ("text", "image")),
    Model("deepseek/deepseek-r1:free", (Endpoint(True),)),
    Model("acme/all-free", (Endpoint(True, JSON), Endpoint(True))),
    Model("acme/partly-free", (Endpoint(True, TOOLS | JSON), Endpoint(False, TOOLS | JSON))),
    Model("openai/gpt-4o", (Endpoint(False, TOOLS | JSON),), ("text", "image")),
    Model("openrouter/free", (Endpoint(True),)),
    Model("acme/no-endpoints", ()),
]


def free(body: dict, seed: int = 1) -> list[str]:
    return free_route(body, CANDIDATES, rng=random.Random(seed))


def test_free_models_only():
    assert sorted(free(ask("hi"))) == sorted([
        "meta-llama/llama-3.3-70b-instruct:free", "google/gemma-3-27b-it:free", "deepseek/deepseek-r1:free", "acme/all-free",
    ])


def test_the_pick_is_random():
    firsts = {free(ask("hi"), seed)[0] for seed in range(40)}
    assert len(firsts) > 1


def test_needs_narrow_the_choice():
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}
    assert free(image) == ["google/gemma-3-27b-it:free"]
    assert free(ask("hi", tools=[{"type": "function", "function": {"name": "f"}}])) == ["meta-llama/llama-3.3-70b-instruct:free"]
    structured = ask("hi", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert sorted(free(structured)) == ["acme/all-free", "meta-llama/llama-3.3-70b-instruct:free"]
    assert len(free(ask("hi", response_format={"type": "text"}))) == 4  # plain text is no need


def test_no_free_model_fits_is_a_404():
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
            "tools": [{"type": "function", "function": {"name": "f"}}]}
    with pytest.raises(NotFound, match="needs: vision, tools"):
        free(body)


def test_request_needs():
    needs = request_needs(ask("hi", tools=[{"type": "function"}], response_format={"type": "json_object"}))
    assert (needs.vision, needs.tools, needs.structured_outputs) == (False, True, True)


def test_the_shipped_catalog_has_free_models_for_plain_and_tool_requests():
    catalog = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))

    def entry(model: dict) -> Model:
        endpoints = tuple(
            Endpoint(e["pricing"]["prompt"] == "0" and e["pricing"]["completion"] == "0", frozenset(e["supported_parameters"]))
            for e in model["endpoints"]
        )
        return Model(model["id"], endpoints, tuple(model["input_modalities"]))

    candidates = [entry(m) for m in catalog["models"]]
    assert all(slug.endswith(":free") for slug in free_route(ask("hi"), candidates))
    assert free_route(ask("hi", tools=[{"type": "function"}]), candidates) == ["meta-llama/llama-3.3-70b-instruct:free"]
