"""A guardrail budget holds like the balance: forty parallel requests over two gateway processes (one
PostgreSQL, one Redis) never spend more than a $0.002 budget, with the key's and the member's budgets
both held in the same atomic step as the credits (the lowest wins)."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from django.db import transaction

from accounts import guardrails as gr
from accounts.organizations import organization_create, organization_member_add
from accounts.services import api_key_create, user_get_or_create
from activity.models import Generation
from billing.counters import counters, limit_window
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift, ledger_sum
from billing.services import credits_grant
from tests.billing.test_scale_out import _body, _generations_written, two_gateways  # noqa: F401 (fixture)
from tests.factories import KeyBundle, make_account
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = usd_to_nanos("0.002")
MEMBER_BUDGET = usd_to_nanos("0.0015")


def _burst(servers, bundle, body, n: int = 40) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(
                *[
                    client.post(f"{servers[i % 2].url}/chat/completions", json=body, headers=bundle.headers)
                    for i in range(n)
                ]
            )

    return asyncio.run(run())


def _org_key():
    owner = make_account(credits="0")
    org = organization_create(owner=owner.owner, name="Burst Inc")
    credits_grant(account=org, amount=usd_to_nanos("5"), idempotency_key=f"burst:{org.id}")
    user, _ = user_get_or_create(email=f"burst-{org.id}@example.com")
    organization_member_add(organization=org, user=user)
    with transaction.atomic():
        key, raw = api_key_create(account=org, name="member key", creator=user)
    return org, user, KeyBundle(raw=raw, key=key, account=org)


@pytest.mark.parametrize("with_member_budget", [False, True], ids=["key-budget", "key-and-member-budgets"])
def test_a_burst_over_two_processes_never_exceeds_the_guardrail_budget(two_gateways, simulator, with_member_budget):  # noqa: F811
    slug, endpoints = multi_provider_model()
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, latency_ms=300)  # every request holds while the others arrive
    # Each request may cost about a tenth of the budget: the account's $5 would pay for all forty.
    max_tokens = max(math.ceil(200_000 * 1_000_000 / endpoints[0].price_completion), 1)
    org, user, bundle = _org_key()
    key_rule = gr.guardrail_create(account=org, name="Key budget", limit=BUDGET, reset_interval="daily")
    with transaction.atomic():
        gr.guardrail_keys_assign(guardrail=key_rule, keys=[bundle.key], assigned_by=None)
    if with_member_budget:
        member_rule = gr.guardrail_create(account=org, name="Member budget", limit=MEMBER_BUDGET, reset_interval="monthly")
        with transaction.atomic():
            gr.guardrail_members_assign(guardrail=member_rule, users=[user], assigned_by=None)

    responses = _burst(two_gateways, bundle, _body(slug, max_tokens))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 403}, statuses
    assert statuses.count(403) > 0, "the budget should not cover all forty requests"
    blocked = {r.json()["error"]["metadata"]["guardrail_name"] for r in responses if r.status_code == 403}
    assert blocked == ({"Member budget"} if with_member_budget else {"Key budget"})
    served = {r.json()["id"] for r in responses if r.status_code == 200}
    assert served

    ids = _generations_written(org.id, len(served))
    assert sorted(ids) == sorted(served)
    spent = sum(Generation.objects.filter(api_key=bundle.key).values_list("cost", flat=True))
    assert 0 < spent <= (MEMBER_BUDGET if with_member_budget else BUDGET)
    # nothing is left held once every request settled, and the mirror holds the real spend
    snapshot = counters().budget_snapshot(f"k:{bundle.key.hash}", limit_window("daily"))
    assert snapshot["held"] == 0 and snapshot["spent"] in (None, spent)
    org.refresh_from_db()
    assert org.balance == usd_to_nanos("5") - spent
    assert ledger_sum(account_id=org.id) == org.balance
    assert ledger_drift() == []
