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


class Purchase(models.Model):
    """A purchase of credits: by card through Stripe, or by crypto (USDC) through a processor."""

    class Method(models.TextChoices):
        CARD = "card"
        CRYPTO = "crypto"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"
        REFUNDED = "refunded"
        PARTIALLY_REFUNDED = "partially_refunded"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="purchases")
    method = models.CharField(max_length=8, choices=Method.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    credits = models.BigIntegerField()  # nano-dollars granted on success (whole cents)
    fee = models.BigIntegerField()  # nano-dollars charged on top, never refunded
    total_cents = models.BigIntegerField()  # what the payer is charged, in cents
    currency = models.CharField(max_length=3, default="usd")
    is_auto_topup = models.BooleanField(default=False)
    # External references: unique, so a replayed webhook finds the same purchase.
    stripe_payment_intent_id = models.CharField(max_length=120, unique=True, null=True, blank=True)
    crypto_charge_id = models.CharField(max_length=120, unique=True, null=True, blank=True)
    crypto_hosted_url = models.CharField(max_length=500, blank=True)  # where the payer completes a crypto charge
    failure_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(credits__gt=0, fee__gte=0, total_cents__gt=0), name="purchase_amounts_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.method} purchase {self.id} ({self.status})"


class CreditLot(models.Model):
    """Credits that arrived together (a purchase or a grant); usage consumes the oldest lot first."""

    class Source(models.TextChoices):
        CARD = "card"
        CRYPTO = "crypto"
        PROMOTIONAL = "promotional"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credit_lots")
    source = models.CharField(max_length=12, choices=Source.choices)
    purchase = models.OneToOneField(Purchase, null=True, blank=True, on_delete=models.PROTECT, related_name="lot")
    amount = models.BigIntegerField()  # nano-dollars granted
    remaining = models.BigIntegerField()  # nano-dollars not yet used, refunded or expired
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(db_index=True)
    refundable_until = models.DateTimeField(null=True, blank=True)  # card purchases only
    expired_at = models.DateTimeField(null=True, blank=True)
    expiry_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0, remaining__lte=models.F("amount")), name="lot_remaining_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"lot {self.id} {self.source} {self.remaining}/{self.amount}"


class Refund(models.Model):
    """Money paid back for unused credits of a card purchase.

    The credits leave the ledger when the refund is *reserved* (before Stripe is called), so
    no request can spend them meanwhile; ``pending`` means Stripe's answer is not known yet,
    ``failed`` means Stripe refused and the credits were put back with a reversing entry.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="refunds")
    credits = models.BigIntegerField()  # nano-dollars taken back from the lot (whole cents)
    amount_cents = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=120, unique=True, null=True, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"refund {self.id} of purchase {self.purchase_id} ({self.status})"


class WebhookEvent(models.Model):
    """Every webhook as received: stored under its unique id before it is processed."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    source = models.CharField(max_length=12)  # "stripe" | "crypto"
    event_id = models.CharField(max_length=120)
    type = models.CharField(max_length=80)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.IntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="webhook_event_unique")]

    def __str__(self) -> str:
        return f"{self.source} {self.type} {self.event_id} ({self.status})"


class BillingProfile(models.Model):
    """An account's payment details and auto top-up settings."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="billing_profile")
    stripe_customer_id = models.CharField(max_length=120, blank=True)
    default_payment_method_id = models.CharField(max_length=120, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    auto_topup_enabled = models.BooleanField(default=False)
    auto_topup_threshold = models.BigIntegerField(default=2 * 10**9)  # nano-dollars
    auto_topup_amount = models.BigIntegerField(default=25 * 10**9)  # nano-dollars of credits
    auto_topup_failures = models.IntegerField(default=0)
    auto_topup_in_flight = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    auto_topup_disabled_reason = models.CharField(max_length=300, blank=True)
    # After a declined top-up, the next attempt waits until then (a burst of requests must not
    # burn through the allowed failures in a second).
    auto_topup_retry_after = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"billing profile of {self.account_id}"


class SettlementDeadLetter(models.Model):
    """A finished generation whose settlement could never be written (kept, never charged).

    The settlement writer sets such a record aside after writing it alone failed while the
    database was up: its hold is released with a charge of 0, and the record stays here, with
    the reason, for staff to look at. ``record`` is the whole GenerationRecord as JSON.
    """

    generation_id = models.CharField(max_length=64, unique=True)
    account_id = models.BigIntegerField(db_index=True)  # not a foreign key: the account may be what broke
    held = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(default=0)  # what the request would have been charged
    reason = models.TextField()
    record = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"dead letter {self.generation_id}"
