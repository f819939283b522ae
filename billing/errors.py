"""Billing's errors: each has a status and a message a person can act on.

They are ``ApiError``s, so the JSON endpoints answer them in OpenRouter's envelope and
the pages show their message; nothing here ever becomes a bare 500.
"""

from __future__ import annotations

from openrouter_site.errors import ApiError, BadRequest


class PurchaseInvalid(BadRequest):
    """A purchase amount or method the platform does not accept."""

    message = "Enter an amount in US dollars, e.g. 10 or 25.50"


class CardRequired(BadRequest):
    message = "Add a card first: no card is saved for this account."


class CardSetupInvalid(BadRequest):
    message = "The card could not be saved."


class PaymentDeclined(ApiError):
    """The card issuer refused the charge (nothing was charged)."""

    status = 402
    message = "Your card was declined."

    def __init__(self, message: str | None = None, *, payment_intent_id: str | None = None, code: str = "") -> None:
        super().__init__(message)
        self.payment_intent_id = payment_intent_id
        self.code = code


class PaymentUnavailable(ApiError):
    """The payment processor could not be reached or failed; whether it acted is unknown."""

    status = 503
    message = "The payment service is unreachable right now; nothing was charged. Please try again in a minute."

    def __init__(self, message: str | None = None, *, purchase_id: int | None = None) -> None:
        super().__init__(message)
        self.purchase_id = purchase_id


class PaymentRejected(ApiError):
    """The payment processor refused the request itself (a bug or a misconfiguration, not the card)."""

    status = 502
    message = "The payment service refused the request; nothing was charged."


class RefundRefused(ApiError):
    status = 400
    message = "This purchase cannot be refunded."


class AutoTopupInvalid(BadRequest):
    message = "Invalid auto top-up settings."


class WebhookRejected(BadRequest):
    """A webhook we will not act on: the sender gets a 4xx and nothing moves."""

    message = "Webhook rejected"


class WebhookSignatureInvalid(WebhookRejected):
    message = "Invalid webhook signature"


class WebhookUnknownPayment(WebhookRejected):
    message = "Webhook for an unknown payment"


class AdjustmentRefused(BadRequest):
    """A support adjustment the rules do not allow (e.g. a debit below zero without a lead)."""

    message = "This adjustment is not allowed."
