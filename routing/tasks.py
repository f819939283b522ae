"""Celery tasks of routing."""

from __future__ import annotations

from celery import shared_task

from .stats import stats_rollup


@shared_task(ignore_result=True)
def endpoint_stats_rollup() -> int:
    """Roll finished minutes of endpoint statistics into minute and hour aggregates (every minute)."""
    return stats_rollup()
