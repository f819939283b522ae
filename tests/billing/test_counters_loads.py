"""billing.counters: the first load of an account's balance and of its key's limit window, on the
store in use (in-process, or Redis when REDIS_URL is set): concurrent holds share one load, and a
load that races a committed ledger change is not kept."""

from __future__ import annotations

import asyncio

import pytest

from billing import counters as counters_module
from billing.counters import balance_loads, counters, key_spent_loads, limit_window
from billing.money import usd_to_nanos
from billing.services import credits_grant
from tests.factories import make_account, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_first_holds_share_one_balance_load_and_one_window_load():
    bundle = make_key(credits="10", limit="5", limit_reset="daily")
    before = (balance_loads.loads, key_spent_loads.loads)

    async def burst():
        return await asyncio.gather(
            *(
                counters().hold(
                    account_id=bundle.account.id,
                    amount=1000,
                    key_hash=bundle.key.hash,
                    key_limit=bundle.key.limit,
                    window=limit_window("daily"),
                )
                for _ in range(100)
            )
        )

    results = asyncio.run(burst())
    assert all(result.ok for result in results)
    assert (balance_loads.loads - before[0], key_spent_loads.loads - before[1]) == (1, 1)
    assert counters().snapshot(bundle.account.id) == {"bal": usd_to_nanos("10"), "held": 100 * 1000}


def test_a_balance_load_that_races_a_grant_is_not_kept(monkeypatch):
    account = make_account(credits="1")
    original = counters_module._db_balance_async
    reads: list[int] = []

    async def racing(account_id: int) -> int:
        value = await original(account_id)
        reads.append(value)
        if len(reads) == 1:  # credits arrive (and are mirrored) while this read is on its way back
            await asyncio.to_thread(
                credits_grant, account=account, amount=usd_to_nanos("2"), idempotency_key=f"race:{account.id}"
            )
        return value

    monkeypatch.setattr(counters_module, "_db_balance_async", racing)
    result = asyncio.run(
        counters().hold(account_id=account.id, amount=usd_to_nanos("2.5"), key_hash="k", key_limit=None, window="all")
    )
    assert reads == [usd_to_nanos("1"), usd_to_nanos("3")]  # the stale $1 was dropped and read again
    assert result.ok
