"""Reads about money."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Account
from openrouter_site.inputs import int_text

from . import money
from .models import BillingProfile, CreditLot, LedgerEntry, Purchase, Refund, SettlementDeadLetter, WebhookEvent


def account_totals(*, account_id: int) -> dict[str, int]:
    row = Account.objects.filter(id=account_id).values("balance", "total_credits", "total_usage").first()
    return row or {"balance": 0, "total_credits": 0, "total_usage": 0}


def ledger_sum(*, account_id: int) -> int:
    return LedgerEntry.objects.filter(account_id=account_id).aggregate(total=Sum("amount"))["total"] or 0


def ledger_drift(*, account_id: int | None = None) -> list[dict]:
    """Accounts (all, or one) whose cached balance, totals or credit lots disagree with their ledger
    (a balance below zero has empty lots)."""
    entries = LedgerEntry.objects.all()
    lots = CreditLot.objects.filter(expired_at__isnull=True)
    accounts = Account.objects.only("id", "balance", "total_credits", "total_usage")
    if account_id is not None:
        entries, lots, accounts = (
            entries.filter(account_id=account_id),
            lots.filter(account_id=account_id),
            accounts.filter(id=account_id),
        )
    sums = dict(entries.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total"))
    in_lots_by_account = dict(lots.values("account_id").annotate(total=Sum("remaining")).values_list("account_id", "total"))
    drift = []
    for account in accounts:
        total = sums.get(account.id, 0)
        in_lots = in_lots_by_account.get(account.id, 0)
        if total != account.balance or account.total_credits - account.total_usage != account.balance or (
            in_lots != max(account.balance, 0)  # below zero, every lot is used up
        ):
            drift.append({"account_id": account.id, "balance": account.balance, "ledger": total, "lots": in_lots})
    return drift


# --- Purchases, lots, refunds ------------------------------------------------------------------


def refund_refusal(
    *, purchase: Purchase, now: dt.datetime, lot: CreditLot | None = None, ignore_window: bool = False
) -> str:
    """Why this purchase cannot be refunded now ("" when it can). ``ignore_window``: a support lead's
    exception to the 24-hour window (everything else still applies)."""
    if purchase.method == Purchase.Method.CRYPTO:
        return "Crypto purchases are never refundable."
    if purchase.status == Purchase.Status.REFUNDED:
        return "This purchase was already refunded."
    if purchase.status not in (Purchase.Status.SUCCEEDED, Purchase.Status.PARTIALLY_REFUNDED):
        return f"Only completed purchases can be refunded; this one is {purchase.get_status_display().lower()}."
    lot = lot or CreditLot.objects.filter(purchase=purchase).first()
    if lot is None or lot.source != CreditLot.Source.CARD or lot.refundable_until is None:
        return "Only card purchases can be refunded; promotional credits never are."
    if now > lot.refundable_until and not ignore_window:
        return (
            "Refunds are possible within 24 hours of a purchase; the window for this one closed on "
            f"{lot.refundable_until:%Y-%m-%d %H:%M} UTC."
        )
    if lot.expired_at is not None or money.nanos_to_cents_floor(lot.remaining) <= 0:
        return "All credits of this purchase have been used or refunded; nothing is left to refund."
    return ""


@dataclass(frozen=True)
class PurchaseRow:
    purchase: Purchase
    lot: CreditLot | None
    refunded_credits: int
    refundable_credits: int
    refund_refusal: str

    @property
    def refundable_until(self) -> dt.datetime | None:
        return self.lot.refundable_until if self.lot else None

    @property
    def expires_at(self) -> dt.datetime | None:
        return self.lot.expires_at if self.lot else None


def purchase_rows(*, account: Account, now: dt.datetime | None = None, limit: int = 100) -> list[PurchaseRow]:
    """The account's purchases, newest first, each with its lot, refunds and whether it can be refunded."""
    now = now or timezone.now()
    purchases = list(Purchase.objects.filter(account=account).select_related("lot").order_by("-created_at", "-id")[:limit])
    refunded = dict(
        Refund.objects.filter(purchase__in=purchases)
        .exclude(status=Refund.Status.FAILED)
        .values("purchase_id")
        .annotate(total=Sum("credits"))
        .values_list("purchase_id", "total")
    )
    rows = []
    for purchase in purchases:
        lot = getattr(purchase, "lot", None)
        refusal = refund_refusal(purchase=purchase, now=now, lot=lot)
        refundable = 0 if refusal else money.cents_to_nanos(money.nanos_to_cents_floor(lot.remaining))
        rows.append(PurchaseRow(purchase, lot, refunded.get(purchase.id, 0), refundable, refusal))
    return rows


def purchase_for_account(*, account: Account, purchase_id: int) -> Purchase | None:
    return Purchase.objects.select_related("lot").filter(account=account, id=purchase_id).first()


def purchase_receipt(*, account: Account, purchase_id: int) -> dict | None:
    purchase = purchase_for_account(account=account, purchase_id=purchase_id)
    if purchase is None:
        return None
    lot = getattr(purchase, "lot", None)
    return {
        "purchase": purchase,
        "lot": lot,
        "refunds": list(purchase.refunds.order_by("created_at")),
        "refund_refusal": refund_refusal(purchase=purchase, now=timezone.now(), lot=lot),
    }


def lots_active(*, account: Account) -> list[CreditLot]:
    """Lots with credits left, oldest first (the order usage consumes them)."""
    return list(
        CreditLot.objects.filter(account=account, expired_at__isnull=True, remaining__gt=0).order_by("created_at", "id")
    )


def lots_expiring(*, account: Account, now: dt.datetime | None = None) -> list[CreditLot]:
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=settings.BILLING_EXPIRY_NOTICE_DAYS)
    return [lot for lot in lots_active(account=account) if lot.expires_at <= horizon]


def billing_profile_for(*, account: Account) -> BillingProfile:
    """The account's billing profile, or an unsaved default one (reading never writes)."""
    return BillingProfile.objects.filter(account=account).first() or BillingProfile(account=account)


def ledger_movements(*, account_id: int, limit: int = 50) -> list[LedgerEntry]:
    """Credits in and out other than usage (purchases, grants, refunds, expiry), newest first."""
    return list(
        LedgerEntry.objects.filter(account_id=account_id)
        .exclude(kind=LedgerEntry.Kind.USAGE)
        .order_by("-id")[:limit]
    )


def ledger_entries(*, account_id: int, limit: int = 200, before_id: int | None = None) -> list[LedgerEntry]:
    entries = LedgerEntry.objects.filter(account_id=account_id)
    if before_id is not None:
        entries = entries.filter(id__lt=before_id)
    return list(entries.order_by("-id")[:limit])


def account_find(*, query: str) -> Account | None:
    """Support staff: an account by id, public id or owner email."""
    query = query.strip()
    if not query:
        return None
    account_id = int_text(query)
    if account_id is not None:
        return Account.objects.select_related("owner").filter(id=account_id).first()
    return (
        Account.objects.select_related("owner")
        .filter(Q(public_id=query) | Q(owner__email__iexact=query))
        .order_by("id")
        .first()
    )


def purchase_drift() -> list[dict]:
    """Purchases whose credits and lot disagree: a paid purchase must have exactly its lot and its
    ``purchase:<id>`` ledger entry; an unpaid one neither."""
    paid = (Purchase.Status.SUCCEEDED, Purchase.Status.REFUNDED, Purchase.Status.PARTIALLY_REFUNDED)
    granted = dict(
        LedgerEntry.objects.filter(idempotency_key__startswith="purchase:").values_list("idempotency_key", "amount")
    )
    lots = dict(CreditLot.objects.filter(purchase__isnull=False).values_list("purchase_id", "amount"))
    drift = []
    for purchase_id, account_id, status, credits in Purchase.objects.values_list("id", "account_id", "status", "credits"):
        entry = granted.get(f"purchase:{purchase_id}")
        lot = lots.get(purchase_id)
        ok = (entry == credits and lot == credits) if status in paid else (entry is None and lot is None)
        if not ok:
            drift.append({"purchase_id": purchase_id, "account_id": account_id, "status": status, "ledger": entry, "lot": lot})
    return drift


def settlement_dead_letters_count() -> int:
    """How many settlements were set aside because they could not be written (a metric)."""
    return SettlementDeadLetter.objects.count()


def settlement_dead_letters(*, account_id: int | None = None, limit: int = 100) -> list[SettlementDeadLetter]:
    """Settlements that could not be written (newest first), for staff; one account's when given."""
    rows = SettlementDeadLetter.objects.order_by("-created_at", "-id")
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    return list(rows[: max(limit, 0)])


def webhook_events_for_account(*, account: Account, limit: int = 50) -> list[WebhookEvent]:
    """Support staff: the payment webhooks about this account's purchases, newest first."""
    intents = [i for i in Purchase.objects.filter(account=account).values_list("stripe_payment_intent_id", flat=True) if i]
    charges = [c for c in Purchase.objects.filter(account=account).values_list("crypto_charge_id", flat=True) if c]
    if not intents and not charges:
        return []
    match = Q(source="stripe", payload__data__object__id__in=intents) | Q(source="crypto", payload__data__id__in=charges)
    return list(WebhookEvent.objects.filter(match).order_by("-received_at", "-id")[:limit])


def purchase_find(*, query: str) -> Purchase | None:
    """Support staff: a purchase by its id, Stripe PaymentIntent id, Stripe charge id or crypto charge id."""
    query = query.strip()
    if not query or "\x00" in query:  # PostgreSQL refuses NUL in text
        return None
    purchase_id = int_text(query)
    if purchase_id is not None:
        return Purchase.objects.filter(id=purchase_id).first()
    found = Purchase.objects.filter(Q(stripe_payment_intent_id=query) | Q(crypto_charge_id=query)).first()
    if found is not None or not query.startswith(("ch_", "py_")):
        return found
    # A charge id: the payment webhooks name the charge of each PaymentIntent.
    event = (
        WebhookEvent.objects.filter(source="stripe")
        .filter(Q(payload__data__object__latest_charge=query) | Q(payload__data__object__charges__data__0__id=query))
        .first()
    )
    intent = ((event.payload.get("data") or {}).get("object") or {}).get("id") if event else None
    return Purchase.objects.filter(stripe_payment_intent_id=intent).first() if intent else None


def refunds_for_account(*, account: Account) -> list[Refund]:
    return list(Refund.objects.filter(purchase__account=account).order_by("-created_at", "-id"))
