"""Credits moved from a person's own account to an organization they belong to (never back).

One transaction locks both accounts (in id order), appends the two ledger entries (unique
idempotency keys ``transfer:<key>:out`` and ``:in``: a retried form moves nothing twice), takes the
amount from the source's lots (oldest first) and gives the organization a new, non-refundable lot.
Only what is not held by running requests can move. Counters are told after the commit.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account
from openrouter_site.errors import BadRequest

from ..counters import counters
from ..models import CreditLot, LedgerEntry
from .ledger import LOT_LIFETIME, lots_consume


class TransferError(BadRequest):
    pass


def credits_transfer(*, source: Account, target: Account, amount: int, idempotency_key: str) -> LedgerEntry:
    """Move ``amount`` nano-dollars from ``source`` (personal) to ``target`` (an organization)."""
    if source.kind != Account.Kind.PERSONAL or target.kind != Account.Kind.ORGANIZATION:
        raise TransferError("Credits move only from a personal account to an organization.")
    if amount <= 0:
        raise TransferError("The amount must be positive.")
    key_out, key_in = f"transfer:{idempotency_key}:out", f"transfer:{idempotency_key}:in"
    existing = LedgerEntry.objects.filter(idempotency_key=key_out).first()
    if existing is not None:
        return existing
    held = counters().snapshot(source.id)["held"] or 0
    try:
        with transaction.atomic():
            locked = {a.id: a for a in Account.objects.select_for_update().filter(id__in=[source.id, target.id]).order_by("id")}
            src, dst = locked[source.id], locked[target.id]
            if dst.closed_at is not None:
                raise TransferError("This organization no longer exists.")
            if src.balance - held < amount:
                raise TransferError("Your personal balance does not cover that amount.")
            out = LedgerEntry.objects.create(
                account=src, kind=LedgerEntry.Kind.ADJUSTMENT, amount=-amount, balance_after=src.balance - amount,
                idempotency_key=key_out, memo=f"Moved to the organization {dst.name}"[:300],
                reference=f"transfer:{dst.public_id}",
            )
            LedgerEntry.objects.create(
                account=dst, kind=LedgerEntry.Kind.ADJUSTMENT, amount=amount, balance_after=dst.balance + amount,
                idempotency_key=key_in, memo=f"Moved from {src.name or src.public_id}"[:300],
                reference=f"transfer:{src.public_id}",
            )
            lots_consume(account_id=src.id, amount=amount)
            now = timezone.now()
            debt = min(max(-dst.balance, 0), amount)
            CreditLot.objects.create(
                account=dst, source=CreditLot.Source.PROMOTIONAL, amount=amount, remaining=amount - debt,
                created_at=now, expires_at=now + LOT_LIFETIME,
            )
            Account.objects.filter(id=src.id).update(balance=F("balance") - amount, total_credits=F("total_credits") - amount)
            Account.objects.filter(id=dst.id).update(balance=F("balance") + amount, total_credits=F("total_credits") + amount)
            src_id, dst_id = src.id, dst.id

            def tell_counters() -> None:
                counters().adjust(account_id=src_id, delta=-amount)
                counters().adjust(account_id=dst_id, delta=amount)

            transaction.on_commit(tell_counters)
    except IntegrityError:
        return LedgerEntry.objects.get(idempotency_key=key_out)
    return out
