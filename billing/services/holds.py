"""Holds for money leaving outside a request.

A refund or an expiry takes credits away while requests may be running against the same
balance. Both first *hold* the amount in the credit counters, exactly as a request does, so
running requests keep what they reserved and new ones cannot take what is leaving; the
hold is settled (released, with the amount charged) after the ledger transaction commits.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync

from .. import money
from ..counters import Settlement, counters

_HOLD_KEY = "billing"  # holds that belong to no API key (no key limit applies)


def credits_hold(*, account_id: int, amount: int, whole_cents: bool) -> int:
    """Hold up to ``amount`` of the account's available credits; returns what was held (maybe 0)."""
    store = counters()
    for _ in range(4):
        if amount <= 0:
            return 0
        result = async_to_sync(store.hold)(
            account_id=account_id, amount=amount, key_hash=_HOLD_KEY, key_limit=None, window="all"
        )
        if result.ok:
            return amount
        available = max(result.available, 0)
        amount = min(amount, money.cents_to_nanos(money.nanos_to_cents_floor(available)) if whole_cents else available)
    return 0


def hold_settle(*, account_id: int, held: int, charged: int) -> None:
    counters().settle([Settlement(account_id=account_id, key_hash=None, window=None, held=held, charged=charged)])
