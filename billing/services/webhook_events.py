"""Webhook events: stored once under their unique id, processed once, the outcome recorded."""

from __future__ import annotations

from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..models import WebhookEvent

_EVENT_DONE = (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED)


def webhook_event_record(*, source: str, event_id: str, event_type: str, payload: dict) -> tuple[WebhookEvent, bool]:
    """Store a verified event under its unique id, once. Returns it and whether it was already handled."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(source=source, event_id=event_id[:120], type=event_type[:80], payload=payload)
        return event, False
    except IntegrityError:
        event = WebhookEvent.objects.get(source=source, event_id=event_id[:120])
        return event, event.status in _EVENT_DONE


def webhook_event_process(*, event: WebhookEvent, handler: Callable[[dict], str]) -> WebhookEvent:
    """Run ``handler`` (which returns ``processed`` or ``ignored``) on the event in one transaction,
    with the event row locked so that concurrent deliveries of it act once; record the outcome.
    A failure is recorded on the event and raised again."""
    try:
        with transaction.atomic():
            locked = WebhookEvent.objects.select_for_update().get(id=event.id)
            if locked.status in _EVENT_DONE:
                return locked
            locked.status = handler(locked.payload)
            locked.attempts += 1
            locked.error = ""
            locked.processed_at = timezone.now()
            locked.save(update_fields=["status", "attempts", "error", "processed_at"])
        return locked
    except Exception as exc:
        WebhookEvent.objects.filter(id=event.id).update(
            status=WebhookEvent.Status.FAILED, attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
