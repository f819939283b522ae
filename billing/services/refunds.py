"""Refunds of a card purchase's unused credits, within 24 hours (the fee is not refunded)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from openrouter_site.errors import NotFound

from .. import money, stripe_client
from ..counters import counters
from ..errors import PaymentDeclined, PaymentRejected, PaymentUnavailable, RefundRefused
from ..models import CreditLot, LedgerEntry, Purchase, Refund
from ..selectors import refund_refusal
from .holds import credits_hold, hold_settle
from .ledger import ledger_move

logger = logging.getLogger("openrouter.billing")


def purchase_refund(
    *,
    account: Account,
    purchase_id: int,
    ignore_window: bool = False,
    on_reserve: Callable[[Refund], None] | None = None,
) -> Refund:
    """Refund the unused credits of a card purchase, within 24 hours; the fee is not refunded.

    ``ignore_window`` is a support lead's exception to the 24 hours; ``on_reserve(refund)`` runs
    inside the transaction that takes the credits out (the staff console's audit entry).

    1. hold the refundable amount in the counters (running requests keep what they hold);
    2. in one transaction take it out of the lot and the balance (ledger entry) and record a
       pending Refund, so no request can spend it while Stripe is asked;
    3. ask Stripe, outside any transaction; 4. record the answer (a refusal puts the credits back).
    """
    purchase = Purchase.objects.select_related("lot").filter(account=account, id=purchase_id).first()
    if purchase is None:
        raise NotFound("No such purchase")
    now = timezone.now()
    refusal = refund_refusal(purchase=purchase, now=now, ignore_window=ignore_window)
    if refusal:
        raise RefundRefused(refusal)
    wanted = money.cents_to_nanos(money.nanos_to_cents_floor(purchase.lot.remaining))
    held = credits_hold(account_id=account.id, amount=wanted, whole_cents=True)
    if held <= 0:
        raise RefundRefused("Running requests are using these credits right now; try again when they have finished.")
    try:
        refund = _refund_reserve(purchase_id=purchase.id, limit=held, ignore_window=ignore_window, on_reserve=on_reserve)
    except BaseException:
        hold_settle(account_id=account.id, held=held, charged=0)
        raise
    hold_settle(account_id=account.id, held=held, charged=refund.credits)
    try:
        info = stripe_client.refund_create(
            payment_intent_id=purchase.stripe_payment_intent_id,
            amount_cents=refund.amount_cents,
            idempotency_key=f"refund:{refund.id}",
            metadata={"refund_id": str(refund.id), "purchase_id": str(purchase.id)},
        )
    except PaymentUnavailable:
        # Unknown whether Stripe refunded: the refund stays pending (its credits stay out of the
        # balance) and the reconcile job asks Stripe later.
        logger.warning("refund %s: Stripe unreachable; left pending for reconciliation", refund.id)
        raise PaymentUnavailable(
            "The payment service is unreachable; your refund is pending and will be completed or undone automatically."
        ) from None
    except (PaymentRejected, PaymentDeclined) as exc:
        refund_reverse(refund_id=refund.id, reason=exc.message)
        raise RefundRefused(f"Stripe refused the refund: {exc.message}") from None
    return refund_succeed(refund_id=refund.id, stripe_refund_id=info.id)


def _refund_reserve(
    *, purchase_id: int, limit: int, ignore_window: bool = False, on_reserve: Callable[[Refund], None] | None = None
) -> Refund:
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(id=purchase_id)
        Account.objects.select_for_update().get(id=purchase.account_id)
        lot = CreditLot.objects.select_for_update().get(purchase=purchase)
        refusal = refund_refusal(purchase=purchase, now=timezone.now(), lot=lot, ignore_window=ignore_window)
        if refusal:
            raise RefundRefused(refusal)
        cents = money.nanos_to_cents_floor(min(limit, lot.remaining))
        if cents <= 0:
            raise RefundRefused("All credits of this purchase have been used; nothing is left to refund.")
        credits = money.cents_to_nanos(cents)
        refund = Refund.objects.create(purchase=purchase, credits=credits, amount_cents=cents)
        ledger_move(
            account_id=purchase.account_id,
            lot=lot,
            amount=-credits,
            kind=LedgerEntry.Kind.REFUND,
            idempotency_key=f"refund:{refund.id}",
            memo=f"refund of purchase {purchase.id}",
            reference=purchase.stripe_payment_intent_id or "",
            purchased=True,
        )
        if on_reserve is not None:
            on_reserve(refund)
    logger.info("refund %s of purchase %s: %s cents reserved", refund.id, purchase.id, cents)
    return refund


def refund_succeed(*, refund_id: int, stripe_refund_id: str) -> Refund:
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("purchase").get(id=refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        refund.status = Refund.Status.SUCCEEDED
        refund.stripe_refund_id = stripe_refund_id
        refund.save(update_fields=["status", "stripe_refund_id"])
        purchase = refund.purchase
        refunded = sum(
            Refund.objects.filter(purchase=purchase, status=Refund.Status.SUCCEEDED).values_list("credits", flat=True)
        )
        purchase.status = (
            Purchase.Status.REFUNDED if refunded >= purchase.credits else Purchase.Status.PARTIALLY_REFUNDED
        )
        purchase.save(update_fields=["status"])
    logger.info("refund %s succeeded (%s)", refund.id, stripe_refund_id)
    return refund


def refund_reverse(*, refund_id: int, reason: str) -> Refund:
    """Stripe refused (or never received) a refund: put its credits back into the lot, once."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("purchase").get(id=refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        account = Account.objects.select_for_update().get(id=refund.purchase.account_id)
        lot = CreditLot.objects.select_for_update().get(purchase_id=refund.purchase_id)
        ledger_move(
            account_id=account.id,
            lot=lot,
            amount=refund.credits,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            idempotency_key=f"refund-reversal:{refund.id}",
            memo=f"refund {refund.id} not paid out; credits restored",
            purchased=True,
        )
        refund.status = Refund.Status.FAILED
        refund.failure_reason = reason[:300]
        refund.save(update_fields=["status", "failure_reason"])
        credits, account_id = refund.credits, account.id
        transaction.on_commit(lambda: counters().adjust(account_id=account_id, delta=credits))
    logger.warning("refund %s reversed: %s", refund.id, reason)
    return refund
