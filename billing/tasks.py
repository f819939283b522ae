"""Celery tasks of billing: load by id, call one service, retry."""

from __future__ import annotations

import logging

from celery import shared_task

from . import services
from .counters import counters
from .errors import PaymentUnavailable

logger = logging.getLogger("openrouter.billing")


@shared_task(ignore_result=True)
def counters_reconcile() -> int:
    """Correct credit-counter mirrors that drifted from the ledger (idle accounts only)."""
    corrected = counters().reconcile()
    if corrected:
        logger.warning("reconciled %s credit counter(s) with the ledger", corrected)
    return corrected


@shared_task(ignore_result=True)
def purchases_reconcile() -> dict[str, int]:
    """Purchases (and refunds) still pending after a few minutes: ask the processor (every 2 minutes)."""
    return services.purchases_reconcile()


@shared_task(ignore_result=True)
def lots_expire() -> dict[str, int]:
    """Expire what is left of credit lots older than a year (daily)."""
    return services.lots_expire()


@shared_task(ignore_result=True)
def lots_expiry_notify() -> int:
    """Tell users about credits that expire soon (daily)."""
    return services.lots_expiry_notify()


@shared_task(bind=True, ignore_result=True, max_retries=6, name="billing.tasks.auto_topup_charge")
def auto_topup_charge(self, *, account_id: int, purchase_id: int | None = None) -> int | None:
    """One auto top-up for an account whose balance fell below its threshold.

    When Stripe is unreachable the same purchase is retried (same idempotency key) with
    backoff; a purchase never retried to the end is canceled by the reconcile job.
    """
    try:
        purchase = services.auto_topup_charge(account_id=account_id, purchase_id=purchase_id)
    except PaymentUnavailable as exc:
        raise self.retry(
            kwargs={"account_id": account_id, "purchase_id": exc.purchase_id or purchase_id},
            countdown=min(15 * 2**self.request.retries, 600),
        ) from None
    return purchase.id if purchase else None
