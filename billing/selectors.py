"""Reads about money."""

from __future__ import annotations

from django.db.models import Sum

from accounts.models import Account

from .models import CreditLot, LedgerEntry


def account_totals(*, account_id: int) -> dict[str, int]:
    row = Account.objects.filter(id=account_id).values("balance", "total_credits", "total_usage").first()
    return row or {"balance": 0, "total_credits": 0, "total_usage": 0}


def ledger_sum(*, account_id: int) -> int:
    return LedgerEntry.objects.filter(account_id=account_id).aggregate(total=Sum("amount"))["total"] or 0


def ledger_drift() -> list[dict]:
    """Accounts whose cached balance, totals or credit lots disagree with their ledger."""
    sums = dict(LedgerEntry.objects.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total"))
    lots = dict(
        CreditLot.objects.filter(expired_at__isnull=True)
        .values("account_id")
        .annotate(total=Sum("remaining"))
        .values_list("account_id", "total")
    )
    drift = []
    for account in Account.objects.only("id", "balance", "total_credits", "total_usage"):
        total = sums.get(account.id, 0)
        in_lots = lots.get(account.id, 0)
        if total != account.balance or account.total_credits - account.total_usage != account.balance or (
            in_lots != account.balance
        ):
            drift.append({"account_id": account.id, "balance": account.balance, "ledger": total, "lots": in_lots})
    return drift
