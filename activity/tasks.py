"""Celery tasks of activity."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .services import generation_contents_purge


@shared_task(ignore_result=True)
def generation_contents_purge_expired() -> int:
    """Delete stored prompts and answers past their retention (beat: hourly)."""
    return generation_contents_purge(now=timezone.now())
