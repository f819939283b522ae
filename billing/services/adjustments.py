"""Support adjustments: credits a staff member grants or takes back, with the reason the user sees.

A grant is a promotional lot (goodwill: never refundable); a debit takes credits out of the
lots, oldest first, like usage. A debit first *holds* the amount in the credit counters, as a
refund does, so running requests keep what they reserved; only a support lead may take a
balance below zero (``allow_negative``), and that balance is then a debt the next credits pay.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import F

from accounts.models import Account

from .. import money
from ..counters import counters
from ..errors import AdjustmentRefused
from ..models import CreditLot, LedgerEntry
from .holds import credits_hold, hold_settle
from .ledger import credits_grant, lots_consume


def credits_adjust(
    *,
    account: Account,
    amount: int,
    idempotency_key: str,
    memo: str,
    reference: str = "",
    allow_negative: bool = False,
    on_entry: Callable[[LedgerEntry], None] | None = None,
) -> LedgerEntry:
    """Grant (``amount`` > 0) or debit (``amount`` < 0) nano-dollars, once per ``idempotency_key``.

    Owns its transaction: do not call it inside another (a debit's hold is settled after the commit).

    ``on_entry(entry)`` runs inside the transaction that writes the ledger entry (the staff
    console writes its audit entry there); it is not called again for a repeated key.
    """
    if amount == 0:
        raise ValueError("an adjustment must move money")
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if amount > 0:
        with transaction.atomic():
            Account.objects.select_for_update().get(id=account.id)
            if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
                return LedgerEntry.objects.get(idempotency_key=idempotency_key)
            entry = credits_grant(
                account=account,
                amount=amount,
                idempotency_key=idempotency_key,
                kind=LedgerEntry.Kind.ADJUSTMENT,
                lot_source=CreditLot.Source.PROMOTIONAL,
                memo=memo,
                reference=reference,
            )
            if on_entry is not None:
                on_entry(entry)
        return entry
    return _debit(
        account=account,
        amount=-amount,
        idempotency_key=idempotency_key,
        memo=memo,
        reference=reference,
        allow_negative=allow_negative,
        on_entry=on_entry,
    )


def _debit(
    *,
    account: Account,
    amount: int,
    idempotency_key: str,
    memo: str,
    reference: str,
    allow_negative: bool,
    on_entry: Callable[[LedgerEntry], None] | None,
) -> LedgerEntry:
    held = 0
    if not allow_negative:
        held = credits_hold(account_id=account.id, amount=amount, whole_cents=False)
        if held < amount:
            hold_settle(account_id=account.id, held=held, charged=0)
            raise AdjustmentRefused(
                f"A debit of {money.nanos_to_display(amount)} would take the balance below zero "
                f"({money.nanos_to_display(held)} is available now). Only a support lead can confirm that."
            )
    committed = False
    entry = None
    try:
        with transaction.atomic():
            locked = Account.objects.select_for_update().get(id=account.id)
            existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
            if locked.balance < amount and not allow_negative:
                raise AdjustmentRefused("This debit would take the balance below zero.")
            entry = LedgerEntry.objects.create(
                account=locked,
                kind=LedgerEntry.Kind.ADJUSTMENT,
                amount=-amount,
                balance_after=locked.balance - amount,
                idempotency_key=idempotency_key,
                memo=memo,
                reference=reference,
            )
            # Lots hold only the positive part of the balance.
            lots_consume(account_id=locked.id, amount=min(amount, max(locked.balance, 0)))
            Account.objects.filter(id=locked.id).update(
                balance=F("balance") - amount, total_credits=F("total_credits") - amount
            )
            if on_entry is not None:
                on_entry(entry)
            if not held:
                account_id = locked.id
                transaction.on_commit(lambda: counters().adjust(account_id=account_id, delta=-amount))
        committed = True
    finally:
        # Once committed the hold becomes the charge; on a failure (or a repeat) it is released.
        if held:
            hold_settle(account_id=account.id, held=held, charged=amount if committed else 0)
    account.refresh_from_db()
    return entry
