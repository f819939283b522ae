"""A fallback attempt that can cost more than the first one extends the credit hold (``Meter.extend``).

Through the live gateway, the provider simulator and the ledger: DeepInfra fails before the first
token with a 503 and Fireworks, five times its price, answers: the same model next in
``provider.order``, or a dearer model next in ``models``. The hold grows to Fireworks' worst case before it is called, the charge is exactly
Fireworks' list price for what it reported, and no hold is left. When the balance covers the first
attempt's worst case but not the fallback's, the fallback is skipped (never called), the request is
OpenRouter's 503 with both attempts in ``previous_errors``, nothing is charged and nothing stays held.
"""

from __future__ import annotations

import os

import pytest

from accounts.models import Account
from billing.counters import RedisCounters, counters
from billing.models import LedgerEntry
from billing.money import nanos_to_usd_number, nanos_to_usd_string, tokens_cost_ceiling, usd_to_nanos
from billing.selectors import ledger_drift, ledger_sum
from billing.settlement import settlement_flush
from tests.billing.test_metering import assert_charged_exactly, largest_hold, price
from tests.factories import make_key
from tests.routing.gateway_helpers import endpoints_of, error_of, make_test_model, post, stream

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"
MAX_TOKENS = 10_000  # the completion dominates each attempt's worst case
ORDER = {"order": ["deepinfra", "fireworks"], "allow_fallbacks": False}
GENEROUS_PROMPT = 1_000  # far more tokens than the one-line prompt can be


def _endpoints():
    endpoints = {e.provider.slug: e for e in endpoints_of(LLAMA)}
    return endpoints["deepinfra"], endpoints["fireworks"]


def _worst_case(endpoint, prompt_tokens: int) -> int:
    return (
        tokens_cost_ceiling(prompt_tokens, endpoint.price_prompt)
        + tokens_cost_ceiling(MAX_TOKENS, endpoint.price_completion)
        + endpoint.price_request
    )


def _route(route: str):
    """(the failing first endpoint, the dearer fallback endpoint, the request body's routing fields)."""
    if route == "provider.order":  # one model, a dearer provider next
        first, fallback = _endpoints()
        return first, fallback, {"model": LLAMA, "provider": ORDER}
    # ``models``: a cheap model, then a model with five times its prices
    _, first = make_test_model("test/cheap", provider="deepinfra", prompt=100_000_000, completion=200_000_000)
    _, fallback = make_test_model("test/dear", provider="fireworks", prompt=500_000_000, completion=1_000_000_000)
    return first, fallback, {"model": "test/cheap", "models": ["test/dear"]}


def _fallback_answers(gateway, simulator, streaming: bool, route: str = "provider.order") -> None:
    first, fallback, routing = _route(route)
    # Fireworks' completion alone costs more than DeepInfra's whole worst case: only an extension covers it.
    fallback_floor = tokens_cost_ceiling(MAX_TOKENS, fallback.price_completion) + fallback.price_request
    assert fallback_floor > _worst_case(first, GENEROUS_PROMPT)
    simulator.set("deepinfra", fail="503")
    simulator.set("fireworks", latency_ms=300)  # long enough for the watcher to see its hold
    bundle = make_key(credits="5")
    credits = usd_to_nanos("5")
    body = {**routing, "max_tokens": MAX_TOKENS}
    with largest_hold(bundle.account.id) as held:
        if streaming:
            response, events = stream(gateway, bundle, body)
            usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
            answered_by = events[-2].get("provider")
        else:
            response = post(gateway, bundle, body)
            usage, generation_id = response.json()["usage"], response.json()["id"]
            answered_by = response.json()["provider"]
    assert response.status_code == 200, response.text
    assert answered_by == fallback.provider.name
    assert simulator.stats("deepinfra")["requests"] == 1 and simulator.stats("fireworks")["requests"] == 1
    assert held[0] >= fallback_floor  # the hold was extended to the fallback's worst case
    charged = price(fallback, usage)  # the answering attempt's real cost at its list price
    assert charged < fallback_floor  # not the hold
    assert usage["cost"] == nanos_to_usd_number(charged)
    assert_charged_exactly(bundle.account, credits, generation_id, charged)
    assert ledger_drift() == []
    _assert_no_hold_left(bundle.account)


def _assert_no_hold_left(account: Account) -> None:
    """The counters' available balance is the ledger's balance: every hold was released."""
    settlement_flush()
    account.refresh_from_db()
    snapshot = counters().snapshot(account.id)
    assert snapshot["held"] == 0
    if snapshot["bal"] is not None:
        assert snapshot["bal"] - snapshot["held"] == account.balance == ledger_sum(account_id=account.id)


@pytest.mark.parametrize("route", ["provider.order", "models"])
@pytest.mark.parametrize("streaming", [False, True])
def test_a_costlier_fallback_extends_the_hold_and_is_charged_its_real_cost(gateway, simulator, streaming, route):
    _fallback_answers(gateway, simulator, streaming, route)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_fallback_the_balance_cannot_cover_is_skipped_and_nothing_is_charged_or_held(gateway, simulator, streaming):
    first, fallback = _endpoints()
    # Covers DeepInfra's worst case (with a generous prompt), not Fireworks' output alone.
    credits = _worst_case(first, GENEROUS_PROMPT)
    assert credits < tokens_cost_ceiling(MAX_TOKENS, fallback.price_completion)
    simulator.set("deepinfra", fail="503")
    bundle = make_key(credits=nanos_to_usd_string(credits))
    credits = Account.objects.get(id=bundle.account.id).balance
    body = {"model": LLAMA, "max_tokens": MAX_TOKENS, "provider": ORDER}
    response = stream(gateway, bundle, body)[0] if streaming else post(gateway, bundle, body)
    # Not every attempt was refused for credits (DeepInfra failed on its own): the provider error,
    # with the skipped attempt's 402 in previous_errors; a 402 only when credits refused them all.
    assert response.status_code == 503, response.text
    error = error_of(response)
    assert error["code"] == 503
    assert error["message"].startswith(f"No provider could serve {LLAMA} right now")
    assert error["metadata"]["error_type"] == "provider_unavailable"
    tried = [(e["provider"], e["status"]) for e in error["metadata"]["previous_errors"]]
    assert tried == [(first.provider.name, 503), (fallback.provider.name, 402)]
    assert simulator.stats("fireworks")["requests"] == 0  # skipped: never called
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == credits
    assert not LedgerEntry.objects.filter(account_id=bundle.account.id, amount__lt=0).exists()
    assert ledger_drift() == []
    _assert_no_hold_left(bundle.account)


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis counters need REDIS_URL")
@pytest.mark.parametrize("route", ["provider.order", "models"])
@pytest.mark.parametrize("streaming", [False, True])
def test_the_hold_extension_on_the_redis_counters(gateway, simulator, streaming, route):
    assert isinstance(counters(), RedisCounters)
    _fallback_answers(gateway, simulator, streaming, route)
