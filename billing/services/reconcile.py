"""The sweep that settles purchases and refunds left pending, by asking the processor."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from .. import stripe_client
from ..crypto import crypto_processor
from ..errors import PaymentUnavailable
from ..models import Purchase, Refund
from .purchases import purchase_fail, purchase_succeed
from .refunds import refund_reverse, refund_succeed

logger = logging.getLogger("openrouter.billing")


def purchases_reconcile(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Settle purchases still pending after a few minutes by asking the processor (a lost webhook,
    a crashed request), give up on those that never reached it, and resolve pending refunds."""
    now = now or timezone.now()
    due = now - dt.timedelta(seconds=settings.BILLING_RECONCILE_AFTER_SECONDS)
    abandon = now - dt.timedelta(seconds=settings.BILLING_ABANDON_AFTER_SECONDS)
    outcomes: Counter[str] = Counter()
    pending = {"status": "pending", "created_at__lte": due}
    for purchase in Purchase.objects.filter(**pending).order_by("id")[:500]:
        _reconcile_count(outcomes, purchase, lambda p=purchase: _purchase_reconcile_one(purchase=p, abandon_before=abandon))
    for refund in Refund.objects.filter(**pending).select_related("purchase").order_by("id")[:500]:
        _reconcile_count(outcomes, refund, lambda r=refund: _refund_reconcile_one(refund=r, abandon_before=abandon))
    if outcomes:
        logger.info("purchases reconciled: %s", dict(outcomes))
    return dict(outcomes)


def _reconcile_count(outcomes: Counter[str], item: Purchase | Refund, reconcile: Callable[[], str]) -> None:
    """One item of the sweep: count its outcome; an unreachable processor or a bug never stops the sweep."""
    try:
        outcomes[reconcile()] += 1
    except PaymentUnavailable:
        outcomes["unreachable"] += 1
    except Exception:
        logger.exception("reconciling %s failed", item)
        outcomes["errors"] += 1


def _purchase_reconcile_one(*, purchase: Purchase, abandon_before: dt.datetime) -> str:
    stale = purchase.created_at <= abandon_before
    if purchase.method == Purchase.Method.CRYPTO:
        status = crypto_processor().charge_status(purchase.crypto_charge_id) if purchase.crypto_charge_id else None
        if status == "confirmed":
            purchase_succeed(purchase_id=purchase.id, crypto_charge_id=purchase.crypto_charge_id)
            return "succeeded"
        if status == "failed":
            purchase_fail(purchase_id=purchase.id, reason="The crypto payment failed.")
            return "failed"
    elif purchase.stripe_payment_intent_id:
        intent = stripe_client.payment_intent_retrieve(purchase.stripe_payment_intent_id)
        if intent.status == "succeeded":
            purchase_succeed(purchase_id=purchase.id, amount_cents=intent.amount, payment_intent_id=intent.id)
            return "succeeded"
        if intent.status in ("canceled", "requires_payment_method"):
            purchase_fail(purchase_id=purchase.id, reason=intent.error_message or "The payment did not go through.")
            return "failed"
        if stale and intent.status in ("requires_action", "requires_confirmation"):
            stripe_client.payment_intent_cancel(intent.id)
    if not stale:
        return "waiting"
    purchase_fail(purchase_id=purchase.id, reason="The payment was not completed in time.", status=Purchase.Status.CANCELED)
    return "abandoned"


def _refund_reconcile_one(*, refund: Refund, abandon_before: dt.datetime) -> str:
    purchase = refund.purchase
    for info in stripe_client.refunds_list(purchase.stripe_payment_intent_id):
        if info.metadata.get("refund_id") == str(refund.id):
            if info.status in ("succeeded", "pending"):
                refund_succeed(refund_id=refund.id, stripe_refund_id=info.id)
                return "refund_succeeded"
            refund_reverse(refund_id=refund.id, reason=f"Stripe refund {info.id} {info.status}")
            return "refund_reversed"
    if refund.created_at > abandon_before:
        return "refund_waiting"
    refund_reverse(refund_id=refund.id, reason="Stripe never received the refund.")
    return "refund_reversed"
