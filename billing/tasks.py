"""Celery tasks of billing: load by id, call one service, retry."""

from __future__ import annotations

import logging

from celery import shared_task

from .counters import counters

logger = logging.getLogger("openrouter.billing")


@shared_task(ignore_result=True)
def counters_reconcile() -> int:
    """Correct credit-counter mirrors that drifted from the ledger (idle accounts only)."""
    corrected = counters().reconcile()
    if corrected:
        logger.warning("reconciled %s credit counter(s) with the ledger", corrected)
    return corrected
