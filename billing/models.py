"""The append-only credit ledger."""

from __future__ import annotations

from django.db import models

from accounts.models import Account


class LedgerEntry(models.Model):
    """One movement of credits, in nano-dollars: positive adds, negative spends.

    Entries are never updated or deleted. ``idempotency_key`` is unique, so a retried
    request, a replayed webhook or a re-run job can never move money twice.
    """

    class Kind(models.TextChoices):
        GRANT = "grant"  # promotional or manual credits
        PURCHASE = "purchase"
        USAGE = "usage"
        REFUND = "refund"
        EXPIRY = "expiry"
        ADJUSTMENT = "adjustment"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=120, unique=True)
    reference = models.CharField(max_length=200, blank=True)
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(amount=0) | models.Q(kind="usage"), name="ledger_entry_moves_money"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.idempotency_key})"
