"""Crypto (USDC) payments: a processor interface and the simulated processor.

A processor creates a *charge* for a purchase and returns a hosted page where the payer
sends USDC; when the payment confirms (or fails) it POSTs a signed webhook to
``/billing/webhooks/crypto``. Crypto purchases pay a 5% fee and are never refundable.

``SimulatedCryptoProcessor`` (``CRYPTO_PROCESSOR=simulated``, the default) is that flow
without a blockchain, for development and tests, and only there: it works only with DEBUG on
or ``CRYPTO_SIMULATED_ENABLED`` (its page lets anyone "pay"). Its hosted page
(``/billing/crypto/simulated/<charge id>``) has "pay" and "fail" buttons, and paying sends
the same HMAC-signed webhook a real processor would, over HTTP, after the page answers.
A real processor is another class with the same four methods.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from openrouter_site.errors import ApiError
from openrouter_site.inputs import int_text, json_loads

from .errors import PaymentUnavailable, WebhookSignatureInvalid

logger = logging.getLogger("openrouter.billing")

SIGNATURE_HEADER = "X-Crypto-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
CONFIRMED = "charge:confirmed"
FAILED = "charge:failed"


@dataclass(frozen=True, slots=True)
class CryptoCharge:
    id: str
    hosted_url: str
    amount_cents: int
    currency: str = "USDC"


class CryptoProcessor(Protocol):
    name: str

    def charge_create(self, *, purchase_id: int, amount_cents: int) -> CryptoCharge:
        """Open a charge the payer completes on ``hosted_url``."""

    def charge_status(self, charge_id: str) -> str | None:
        """'pending' | 'confirmed' | 'failed', or None when the processor cannot tell."""

    def webhook_event(self, *, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify a webhook and return its event: ``{id, type, data: {id, amount_cents, metadata}}``."""


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_verify(payload: bytes, header: str | None, secret: str) -> None:
    """HMAC-SHA256 over ``<timestamp>.<body>``, like Stripe's; a stale timestamp is a replay."""
    if not header:
        raise WebhookSignatureInvalid(f"Missing {SIGNATURE_HEADER} header")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp = int_text(parts.get("t", ""))
    if timestamp is None:
        raise WebhookSignatureInvalid()
    expected = signature_header(payload, secret, timestamp).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise WebhookSignatureInvalid()
    if abs(time.time() - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise WebhookSignatureInvalid("Webhook timestamp outside the tolerance")


class SimulatedCryptoProcessor:
    """Charges live in the cache (a day); paying one sends a signed webhook over HTTP."""

    name = "simulated"
    _PREFIX = "crypto-sim:"

    def charge_create(self, *, purchase_id: int, amount_cents: int) -> CryptoCharge:
        charge_id = "sim_ch_" + secrets.token_hex(10)
        cache.set(
            self._PREFIX + charge_id,
            {"purchase_id": purchase_id, "amount_cents": amount_cents, "status": "pending"},
            timeout=86400,
        )
        return CryptoCharge(
            id=charge_id,
            hosted_url=reverse("billing:crypto-simulated", args=[charge_id]),
            amount_cents=amount_cents,
        )

    def charge(self, charge_id: str) -> dict[str, Any] | None:
        return cache.get(self._PREFIX + charge_id)

    def charge_status(self, charge_id: str) -> str | None:
        charge = self.charge(charge_id)
        return None if charge is None else charge["status"]

    def webhook_event(self, *, payload: bytes, signature: str | None) -> dict[str, Any]:
        signature_verify(payload, signature, settings.CRYPTO_WEBHOOK_SECRET)
        try:
            event = json_loads(payload, what="webhook body")
        except ApiError:
            raise WebhookSignatureInvalid("Webhook body is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("data"), dict):
            raise WebhookSignatureInvalid("Webhook body is not a charge event")
        return event

    def pay(self, charge_id: str, *, webhook_url: str, succeed: bool = True, background: bool = True) -> dict[str, Any]:
        """The payer pays (or the payment fails): record it and send the signed webhook."""
        charge = self.charge(charge_id)
        if charge is None:
            raise PaymentUnavailable("Unknown or expired crypto charge")
        charge["status"] = "confirmed" if succeed else "failed"
        cache.set(self._PREFIX + charge_id, charge, timeout=86400)
        event = {
            "id": "evt_sim_" + secrets.token_hex(10),
            "type": CONFIRMED if succeed else FAILED,
            "created": int(time.time()),
            "data": {
                "id": charge_id,
                "amount_cents": charge["amount_cents"],
                "currency": "USDC",
                "metadata": {"purchase_id": str(charge["purchase_id"])},
            },
        }
        if background:
            # Like a real processor, after the payer's page has answered (a sync view must not
            # wait on a request to the same server).
            threading.Thread(target=self.deliver, args=(event, webhook_url), daemon=True).start()
        else:
            self.deliver(event, webhook_url)
        return event

    @staticmethod
    def deliver(event: dict[str, Any], webhook_url: str) -> int:
        payload = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature_header(payload, settings.CRYPTO_WEBHOOK_SECRET)}
        try:
            response = httpx.post(webhook_url, content=payload, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            logger.warning("simulated crypto webhook %s to %s failed: %s", event["id"], webhook_url, exc)
            return 0
        if response.status_code >= 300:
            logger.warning("simulated crypto webhook %s answered %s", event["id"], response.status_code)
        return response.status_code


_PROCESSORS = {"simulated": SimulatedCryptoProcessor}
_instance: CryptoProcessor | None = None


def crypto_enabled() -> bool:
    """Whether crypto payments are offered: a real processor, or the simulated one where it is allowed."""
    return settings.CRYPTO_PROCESSOR != "simulated" or settings.CRYPTO_SIMULATED_ENABLED


def crypto_processor() -> CryptoProcessor:
    global _instance
    if not crypto_enabled():
        raise PaymentUnavailable("Crypto payments are not available on this site.")
    if _instance is None or _instance.name != settings.CRYPTO_PROCESSOR:
        try:
            _instance = _PROCESSORS[settings.CRYPTO_PROCESSOR]()
        except KeyError:
            raise PaymentUnavailable(f"Unknown crypto processor {settings.CRYPTO_PROCESSOR!r}") from None
    return _instance
