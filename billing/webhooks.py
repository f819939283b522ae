"""Webhooks from the payment processors: POST /billing/webhooks/stripe and /billing/webhooks/crypto.

Verify the signature (400 if it is wrong; nothing is stored), store the event under its
unique id, process it in one transaction and record the outcome. A replay of a handled event
answers 200 and does nothing; an event for a payment we do not know answers 400; an
unexpected failure answers 500, so the sender retries. Events arriving out of order are
harmless: a success after a failure still grants the credits, a failure after a success
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from openrouter_site.errors import ServerError, error_response
from openrouter_site.inputs import int_text

from . import crypto, stripe_client
from .errors import WebhookRejected, WebhookUnknownPayment
from .models import Purchase, WebhookEvent
from .services import purchase_fail, purchase_succeed, webhook_event_process, webhook_event_record

logger = logging.getLogger("openrouter.billing")

PROCESSED = WebhookEvent.Status.PROCESSED
IGNORED = WebhookEvent.Status.IGNORED


def _receive(
    request: HttpRequest, *, source: str, verify: Callable[[], dict[str, Any]], handler: Callable[[dict], str]
) -> HttpResponse:
    try:
        event = verify()
    except WebhookRejected as exc:
        logger.warning("%s webhook refused: %s (from %s)", source, exc.message, request.META.get("REMOTE_ADDR"))
        return error_response(exc)
    record, done = webhook_event_record(
        source=source, event_id=event["id"], event_type=str(event.get("type", "")), payload=event
    )
    if done:
        logger.info("%s webhook %s replayed; already handled", source, record.event_id)
        return JsonResponse({"received": True, "duplicate": True})
    try:
        record = webhook_event_process(event=record, handler=handler)
    except WebhookRejected as exc:
        logger.warning("%s webhook %s (%s) rejected: %s", source, record.event_id, record.type, exc.message)
        return error_response(exc)
    except Exception:
        logger.exception("%s webhook %s (%s) failed", source, record.event_id, record.type)
        return error_response(ServerError("Webhook processing failed; please retry"))
    return JsonResponse({"received": True, "status": record.status})


def _purchase_for(*, field: str, external_id: Any, metadata: Any, method: str) -> Purchase:
    """The purchase a payment belongs to: by the processor's id, else by the id we put in its metadata
    (a webhook can arrive before the request that created the payment stored its id)."""
    purchase = Purchase.objects.filter(**{field: external_id}).first() if isinstance(external_id, str) else None
    purchase_id = int_text(str(metadata.get("purchase_id", ""))) if isinstance(metadata, dict) else None
    if purchase is None and purchase_id is not None:
        purchase = Purchase.objects.filter(id=purchase_id, method=method).first()
    if purchase is None:
        raise WebhookUnknownPayment(f"No purchase for payment {external_id!r}")
    return purchase


# --- Stripe -------------------------------------------------------------------------------------------

_STRIPE_TYPES = {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"}


def stripe_event_handle(event: dict) -> str:
    kind = event.get("type")
    if kind not in _STRIPE_TYPES:
        return IGNORED
    intent = (event.get("data") or {}).get("object")
    if not isinstance(intent, dict) or intent.get("object", "payment_intent") != "payment_intent":
        raise WebhookRejected("Event carries no payment intent")
    purchase = _purchase_for(
        field="stripe_payment_intent_id", external_id=intent.get("id"), metadata=intent.get("metadata"), method="card"
    )
    if kind == "payment_intent.succeeded":
        if str(intent.get("currency", "usd")).lower() != "usd":
            raise WebhookRejected(f"Unexpected currency {intent.get('currency')!r}")
        amount = intent.get("amount_received") or intent.get("amount")
        if not isinstance(amount, int):
            raise WebhookRejected("Payment intent without an amount")
        purchase_succeed(purchase_id=purchase.id, amount_cents=amount, payment_intent_id=intent["id"])
    elif kind == "payment_intent.payment_failed":
        error = intent.get("last_payment_error") or {}
        reason = error.get("message") if isinstance(error, dict) else None
        purchase_fail(purchase_id=purchase.id, reason=reason or "The card was declined.", payment_intent_id=intent["id"])
    else:
        purchase_fail(
            purchase_id=purchase.id,
            reason="The payment was canceled.",
            payment_intent_id=intent["id"],
            status=Purchase.Status.CANCELED,
        )
    return PROCESSED


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    return _receive(
        request,
        source="stripe",
        verify=lambda: stripe_client.webhook_event(payload=request.body, signature=request.headers.get("Stripe-Signature")),
        handler=stripe_event_handle,
    )


# --- Crypto -------------------------------------------------------------------------------------------


def crypto_event_handle(event: dict) -> str:
    kind = event.get("type")
    if kind not in (crypto.CONFIRMED, crypto.FAILED):
        return IGNORED
    charge = event.get("data") or {}
    purchase = _purchase_for(
        field="crypto_charge_id", external_id=charge.get("id"), metadata=charge.get("metadata"), method="crypto"
    )
    if kind == crypto.CONFIRMED:
        amount = charge.get("amount_cents")
        if not isinstance(amount, int):
            raise WebhookRejected("Charge without an amount")
        purchase_succeed(purchase_id=purchase.id, amount_cents=amount, crypto_charge_id=charge["id"])
    else:
        purchase_fail(purchase_id=purchase.id, reason="The crypto payment failed.")
    return PROCESSED


@csrf_exempt
@require_POST
def crypto_webhook(request: HttpRequest) -> HttpResponse:
    if not crypto.crypto_enabled():
        raise Http404("No crypto processor here")
    processor = crypto.crypto_processor()
    return _receive(
        request,
        source="crypto",
        verify=lambda: processor.webhook_event(payload=request.body, signature=request.headers.get(crypto.SIGNATURE_HEADER)),
        handler=crypto_event_handle,
    )
