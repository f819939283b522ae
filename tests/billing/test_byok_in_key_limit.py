"""``include_byok_in_limit``: when on, BYOK usage (the list price of what the user's own provider key paid
for) counts against the key's credit limit; when off it does not. Through the live gateway."""

from __future__ import annotations

import httpx
import pytest

from accounts.services import api_key_update, provider_key_create
from activity.models import Generation
from billing.counters import counters
from billing.money import nanos_to_usd_number, usd_to_nanos
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from routing.models import Provider
from tests.factories import make_key
from tests.routing.gateway_helpers import error_of, post

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"  # the user's deepinfra key serves it first
LIMIT = "0.00001"  # 10,000 nano-dollars: a few BYOK requests' list price


def _byok_key(*, include_byok: bool):
    bundle = make_key(credits="5", limit=LIMIT)
    provider_key_create(account=bundle.account, provider=Provider.objects.get(slug="deepinfra"), key="sk-user-0123456789")
    if include_byok:
        api_key_update(api_key=bundle.key, include_byok_in_limit=True)
    return bundle


def _ask(gateway, bundle, i: int) -> httpx.Response:
    body = {"model": LLAMA, "max_tokens": 20, "messages": [{"role": "user", "content": f"question number {i}"}]}
    return post(gateway, bundle, body)


def _byok_usage(bundle) -> int:
    settlement_flush()
    return sum(Generation.objects.filter(api_key=bundle.key, is_byok=True).values_list("upstream_cost", flat=True))


def test_with_the_flag_off_byok_usage_does_not_count_against_the_limit(gateway, simulator):
    bundle = _byok_key(include_byok=False)
    for i in range(12):
        response = _ask(gateway, bundle, i)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["is_byok"] is True and response.json()["usage"]["cost"] == 0
    assert _byok_usage(bundle) > usd_to_nanos(LIMIT)  # well past the limit, and never refused
    key = httpx.get(f"{gateway.api}/key", headers=bundle.headers, timeout=30).json()["data"]
    assert key["limit_remaining"] == nanos_to_usd_number(usd_to_nanos(LIMIT))
    assert key["byok_usage"] == nanos_to_usd_number(_byok_usage(bundle))


def test_with_the_flag_on_byok_usage_counts_and_the_key_is_refused_at_its_limit(gateway, simulator):
    bundle = _byok_key(include_byok=True)
    served = 0
    for i in range(12):
        response = _ask(gateway, bundle, i)
        if response.status_code == 402:
            message = error_of(response)["message"]
            assert "settings/keys" in message and "higher limit" in message  # the key's limit, not the balance
            break
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["is_byok"] is True and response.json()["usage"]["cost"] == 0
        served += 1
        settlement_flush()  # its usage written (and its hold released): the next refusal is for usage, not holds
    else:
        raise AssertionError("BYOK usage never reached the key's limit")
    assert served >= 1
    used = _byok_usage(bundle)
    assert 0 < used <= usd_to_nanos(LIMIT)  # the holds kept BYOK usage inside the limit
    assert counters().snapshot(bundle.account.id)["held"] == 0
    key = httpx.get(f"{gateway.api}/key", headers=bundle.headers, timeout=30).json()["data"]
    assert key["include_byok_in_limit"] is True
    assert key["limit_remaining"] == nanos_to_usd_number(usd_to_nanos(LIMIT) - used)
    bundle.account.refresh_from_db()
    assert bundle.account.balance == usd_to_nanos("5")  # inside the free allowance: no fee, no charge
    assert ledger_drift() == []

    # Turned off, the same key is served again; turned back on, what it used still counts.
    api_key_update(api_key=bundle.key, include_byok_in_limit=False)
    assert _ask(gateway, bundle, 100).status_code == 200
    # That answer's usage counts against the limit once written (the settlement writer batches: up to
    # MAX_PAUSE under load); until then its hold was in the flag-off window, not in this one.
    settlement_flush()
    api_key_update(api_key=bundle.key, include_byok_in_limit=True)
    assert _ask(gateway, bundle, 101).status_code == 402
