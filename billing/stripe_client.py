"""The only module that imports and configures ``stripe``.

With ``STRIPE_SECRET_KEY`` set, the real Stripe API; without it, the local Stripe server
(localstripe) at ``STRIPE_API_BASE`` with a dummy test key. The same calls work against
both: the card is collected with a SetupIntent (Stripe.js ``confirmCardSetup``), then
charged server-side with a PaymentIntent, on session for a purchase and off session for
an auto top-up.

Every call happens outside any database transaction (the callers make sure of it), and
Stripe's errors leave this module as billing's own error classes:
``PaymentDeclined`` (the card), ``PaymentUnavailable`` (network, Stripe's 5xx, rate limit)
and ``PaymentRejected`` (the request itself). Plain dataclasses come back, never
``StripeObject``s.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import stripe
from django.conf import settings

from openrouter_site.errors import ApiError
from openrouter_site.inputs import int_text, json_loads

from .errors import PaymentDeclined, PaymentRejected, PaymentUnavailable, WebhookSignatureInvalid

logger = logging.getLogger("openrouter.billing")

LOCAL_SECRET_KEY = "sk_test_localstripe"
STRIPE_JS_DEFAULT = "https://js.stripe.com/v3/"
TIMEOUT_SECONDS = 20
_configure_lock = threading.Lock()
_configured: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SetupIntentInfo:
    id: str
    status: str
    client_secret: str
    customer: str | None
    payment_method: str | None


@dataclass(frozen=True, slots=True)
class CardInfo:
    id: str
    customer: str | None
    brand: str
    last4: str


@dataclass(frozen=True, slots=True)
class PaymentIntentInfo:
    id: str
    status: str  # requires_payment_method | requires_confirmation | requires_action | processing | succeeded | canceled
    amount: int
    currency: str
    customer: str | None
    client_secret: str
    metadata: dict[str, str] = field(default_factory=dict)
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class RefundInfo:
    id: str
    status: str
    amount: int
    metadata: dict[str, str] = field(default_factory=dict)


def is_local() -> bool:
    """True when talking to a local Stripe server rather than Stripe itself."""
    return not settings.STRIPE_SECRET_KEY


def publishable_key() -> str:
    return settings.STRIPE_PUBLISHABLE_KEY or "pk_test_localstripe"


def js_url() -> str:
    """Where the page loads Stripe.js from: Stripe's, or localstripe's stand-in for Elements."""
    if settings.STRIPE_JS_URL:
        return settings.STRIPE_JS_URL
    if settings.STRIPE_API_BASE:
        return f"{settings.STRIPE_API_BASE}/js.stripe.com/v3/"
    return STRIPE_JS_DEFAULT


def _configure() -> None:
    """Point the library at Stripe or localstripe (re-read each call: tests move STRIPE_API_BASE)."""
    global _configured
    wanted = (settings.STRIPE_SECRET_KEY or LOCAL_SECRET_KEY, settings.STRIPE_API_BASE or "https://api.stripe.com")
    if _configured == wanted:
        return
    with _configure_lock:
        stripe.api_key, stripe.api_base = wanted
        stripe.max_network_retries = 2  # retried with the same idempotency key
        if stripe.default_http_client is None:
            stripe.default_http_client = stripe.new_default_http_client(timeout=TIMEOUT_SECONDS)
        _configured = wanted


def _call(what: str, function, *args, **kwargs) -> dict[str, Any]:
    """Call the library; its answer comes back as plain data, its errors as ours."""
    _configure()
    try:
        result = function(*args, **kwargs)
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)
    except stripe.CardError as exc:
        body = (exc.json_body or {}).get("error") or {}
        intent = body.get("payment_intent") or {}
        logger.info("stripe %s: card declined (%s)", what, exc.code)
        raise PaymentDeclined(
            exc.user_message or "Your card was declined.",
            payment_intent_id=intent.get("id") if isinstance(intent, dict) else None,
            code=exc.code or "",
        ) from None
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        logger.warning("stripe %s: unreachable or failing: %s", what, exc)
        raise PaymentUnavailable() from None
    except stripe.StripeError as exc:
        if (exc.http_status or 0) >= 500:
            logger.warning("stripe %s: server error %s: %s", what, exc.http_status, exc)
            raise PaymentUnavailable() from None
        logger.error("stripe %s: request refused (%s): %s", what, exc.http_status, exc)
        raise PaymentRejected() from None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    try:
        value = obj[name]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def _metadata(obj: Any) -> dict[str, str]:
    metadata = _get(obj, "metadata", {}) or {}
    return {str(k): str(v) for k, v in metadata.items()}


def _payment_intent(pi: Any) -> PaymentIntentInfo:
    error = _get(pi, "last_payment_error") or {}
    return PaymentIntentInfo(
        id=pi["id"],
        status=pi["status"],
        amount=int(pi["amount"]),
        currency=str(_get(pi, "currency", "")),
        customer=_get(pi, "customer"),
        client_secret=str(_get(pi, "client_secret", "")),
        metadata=_metadata(pi),
        error_message=str(_get(error, "message", "")),
    )


# --- Customers and cards ------------------------------------------------------------------------


def customer_create(*, email: str, account_public_id: str, idempotency_key: str) -> str:
    customer = _call(
        "customer create",
        stripe.Customer.create,
        email=email,
        metadata={"account": account_public_id},
        idempotency_key=idempotency_key,
    )
    return customer["id"]


def setup_intent_create(*, customer_id: str) -> SetupIntentInfo:
    intent = _call(
        "setup intent create",
        stripe.SetupIntent.create,
        customer=customer_id,
        usage="off_session",
        payment_method_types=["card"],
    )
    return _setup_intent(intent)


def setup_intent_retrieve(setup_intent_id: str) -> SetupIntentInfo:
    return _setup_intent(_call("setup intent retrieve", stripe.SetupIntent.retrieve, setup_intent_id))


def _setup_intent(intent: Any) -> SetupIntentInfo:
    payment_method = _get(intent, "payment_method")
    if not isinstance(payment_method, str) and payment_method is not None:
        payment_method = payment_method["id"]
    return SetupIntentInfo(
        id=intent["id"],
        status=intent["status"],
        client_secret=str(_get(intent, "client_secret", "")),
        customer=_get(intent, "customer"),
        payment_method=payment_method,
    )


def card_retrieve(payment_method_id: str) -> CardInfo:
    method = _call("payment method retrieve", stripe.PaymentMethod.retrieve, payment_method_id)
    card = _get(method, "card", {})
    return CardInfo(
        id=method["id"],
        customer=_get(method, "customer"),
        brand=str(_get(card, "brand", "card")),
        last4=str(_get(card, "last4", "")),
    )


def card_attach(*, payment_method_id: str, customer_id: str) -> None:
    """Attach a card to the customer (Stripe does this when a SetupIntent succeeds; localstripe does not)."""
    _call("payment method attach", stripe.PaymentMethod.attach, payment_method_id, customer=customer_id)


# --- Payments and refunds ------------------------------------------------------------------------


def payment_intent_create(
    *,
    amount_cents: int,
    customer_id: str,
    payment_method_id: str,
    off_session: bool,
    idempotency_key: str,
    metadata: dict[str, str],
) -> PaymentIntentInfo:
    """Create and confirm a card payment. A decline raises ``PaymentDeclined``."""
    params: dict[str, Any] = {
        "amount": amount_cents,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": metadata,
        "idempotency_key": idempotency_key,
    }
    if off_session:
        params["off_session"] = True
    return _payment_intent(_call("payment intent create", stripe.PaymentIntent.create, **params))


def payment_intent_retrieve(payment_intent_id: str) -> PaymentIntentInfo:
    return _payment_intent(_call("payment intent retrieve", stripe.PaymentIntent.retrieve, payment_intent_id))


def payment_intent_cancel(payment_intent_id: str) -> None:
    _call("payment intent cancel", stripe.PaymentIntent.cancel, payment_intent_id)


def refund_create(*, payment_intent_id: str, amount_cents: int, idempotency_key: str, metadata: dict[str, str]) -> RefundInfo:
    refund = _call(
        "refund create",
        stripe.Refund.create,
        payment_intent=payment_intent_id,
        amount=amount_cents,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    return RefundInfo(id=refund["id"], status=refund["status"], amount=int(refund["amount"]), metadata=_metadata(refund))


def refunds_list(payment_intent_id: str) -> list[RefundInfo]:
    listing = _call("refund list", stripe.Refund.list, payment_intent=payment_intent_id, limit=100)
    return [
        RefundInfo(id=r["id"], status=r["status"], amount=int(r["amount"]), metadata=_metadata(r))
        for r in listing["data"]
    ]


# --- Webhooks --------------------------------------------------------------------------------------


WEBHOOK_TOLERANCE_SECONDS = 300


def webhook_event(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """Verify a webhook's signature (and its age) and return the event as plain data."""
    if not signature:
        raise WebhookSignatureInvalid("Missing Stripe-Signature header")
    try:
        payload.decode("utf-8")  # Stripe's verifier decodes it, and would raise on anything else
    except UnicodeDecodeError:
        raise WebhookSignatureInvalid("Webhook body is not UTF-8") from None
    timestamps = [int_text(item[2:]) for item in signature.split(",") if item.startswith("t=")]
    if not timestamps or timestamps[0] is None or abs(time.time() - timestamps[0]) > WEBHOOK_TOLERANCE_SECONDS:
        # Stripe's own check lets any future timestamp through; a signed event is only good near its time.
        raise WebhookSignatureInvalid("Webhook timestamp outside the tolerance")
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, ValueError, TypeError, OverflowError):
        raise WebhookSignatureInvalid() from None
    try:
        data = json_loads(payload, what="webhook body")
    except ApiError:
        raise WebhookSignatureInvalid("Webhook body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise WebhookSignatureInvalid("Webhook body is not a Stripe event")
    return data


# --- The local Stripe server ---------------------------------------------------------------------

WEBHOOK_EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"]


def local_webhook_register(*, url: str, webhook_id: str = "openrouter") -> None:
    """Tell localstripe where to send (signed) events: ``POST /_config/webhooks/<id>``.

    With real Stripe the endpoint is registered in Stripe's dashboard instead.
    """
    if not is_local():
        raise RuntimeError("webhooks are registered with localstripe only; configure real Stripe's in its dashboard")
    response = httpx.post(
        f"{settings.STRIPE_API_BASE}/_config/webhooks/{webhook_id}",
        json={"url": url, "secret": settings.STRIPE_WEBHOOK_SECRET, "events": WEBHOOK_EVENTS},
        timeout=10,
    )
    response.raise_for_status()
