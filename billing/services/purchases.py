"""Purchases: by card, by crypto, and the auto top-up charge.

Credits arrive only when the processor says the payment went through (``purchase_succeed``);
a failure is recorded and, for an auto top-up, counted against it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import Account

from .. import fees, money, stripe_client
from ..crypto import crypto_processor
from ..errors import CardRequired, PaymentDeclined, PaymentRejected, PaymentUnavailable, WebhookRejected
from ..models import BillingProfile, CreditLot, LedgerEntry, Purchase
from .ledger import credits_grant
from .topup import auto_topup_failed

logger = logging.getLogger("openrouter.billing")


@dataclass(frozen=True)
class CardPayment:
    purchase: Purchase
    status: str  # the PaymentIntent's
    client_secret: str  # for Stripe.js when the card needs authentication, else ""

    @property
    def requires_action(self) -> bool:
        return self.status == "requires_action"


def _purchase_create(*, account: Account, quote: fees.Quote, is_auto_topup: bool = False) -> Purchase:
    return Purchase.objects.create(
        account=account,
        method=quote.method,
        credits=quote.credits,
        fee=quote.fee,
        total_cents=quote.total_cents,
        is_auto_topup=is_auto_topup,
    )


def card_purchase_start(*, account: Account, amount: object) -> CardPayment:
    """Buy credits with the saved card. Credits arrive with Stripe's webhook, never before."""
    quote = fees.purchase_quote(method=Purchase.Method.CARD, amount=amount)
    profile = BillingProfile.objects.filter(account=account).first()
    if profile is None or not profile.default_payment_method_id:
        raise CardRequired()
    purchase = _purchase_create(account=account, quote=quote)
    logger.info("account %s: card purchase %s of %s cents started", account.id, purchase.id, quote.total_cents)
    intent = _purchase_charge(purchase=purchase, profile=profile, off_session=False)
    purchase.refresh_from_db()
    return CardPayment(
        purchase=purchase,
        status=intent.status,
        client_secret=intent.client_secret if intent.status == "requires_action" else "",
    )


def _purchase_charge(*, purchase: Purchase, profile: BillingProfile, off_session: bool) -> stripe_client.PaymentIntentInfo:
    """Create and confirm the purchase's PaymentIntent; record what Stripe said. No transaction is open."""
    prefix = "topup" if purchase.is_auto_topup else "purchase"
    try:
        intent = stripe_client.payment_intent_create(
            amount_cents=purchase.total_cents,
            customer_id=profile.stripe_customer_id,
            payment_method_id=profile.default_payment_method_id,
            off_session=off_session,
            idempotency_key=f"{prefix}:{purchase.id}",
            metadata={"purchase_id": str(purchase.id), "account": purchase.account.public_id},
        )
    except PaymentDeclined as exc:
        purchase_fail(purchase_id=purchase.id, reason=exc.message, payment_intent_id=exc.payment_intent_id)
        raise
    except PaymentRejected as exc:
        purchase_fail(purchase_id=purchase.id, reason=exc.message)
        raise
    except PaymentUnavailable as exc:
        # Stripe may or may not have acted. A purchase the user is waiting for fails now (a
        # late webhook still succeeds it); an auto top-up stays pending and in flight, and its
        # task retries with the same idempotency key, so it is never charged twice.
        if not purchase.is_auto_topup:
            purchase_fail(purchase_id=purchase.id, reason="The payment service was unreachable.")
        exc.purchase_id = purchase.id
        raise
    Purchase.objects.filter(id=purchase.id, stripe_payment_intent_id__isnull=True).update(
        stripe_payment_intent_id=intent.id
    )
    if intent.status in ("succeeded", "processing") or (intent.status == "requires_action" and not off_session):
        return intent
    if intent.status == "requires_action":
        reason = "The card asks for authentication, which an automatic top-up cannot give."
        try:
            stripe_client.payment_intent_cancel(intent.id)
        except (PaymentUnavailable, PaymentRejected):
            logger.warning("could not cancel payment intent %s", intent.id)
    else:
        reason = intent.error_message or f"The payment did not go through ({intent.status})."
    purchase_fail(purchase_id=purchase.id, reason=reason, payment_intent_id=intent.id)
    raise PaymentDeclined(reason, payment_intent_id=intent.id)


def crypto_purchase_start(*, account: Account, amount: object) -> Purchase:
    """Open a USDC charge with the crypto processor; the payer completes it on its hosted page."""
    quote = fees.purchase_quote(method=Purchase.Method.CRYPTO, amount=amount)
    processor = crypto_processor()  # before anything is saved: raises when crypto payments are off
    purchase = _purchase_create(account=account, quote=quote)
    try:
        charge = processor.charge_create(purchase_id=purchase.id, amount_cents=quote.total_cents)
    except PaymentUnavailable as exc:
        purchase_fail(purchase_id=purchase.id, reason=exc.message)
        raise
    Purchase.objects.filter(id=purchase.id).update(crypto_charge_id=charge.id, crypto_hosted_url=charge.hosted_url)
    purchase.refresh_from_db()
    logger.info("account %s: crypto purchase %s (charge %s) started", account.id, purchase.id, charge.id)
    return purchase


def auto_topup_charge(*, account_id: int, purchase_id: int | None = None) -> Purchase | None:
    """Charge the saved card off session for one top-up.

    Without ``purchase_id``: under the billing profile's row lock, decide (enabled, card saved,
    balance below the threshold, none in flight, not waiting after a decline) and create the
    purchase, marked in flight; concurrent triggers find it in flight and do nothing. With
    ``purchase_id`` (a retry after Stripe was unreachable): charge that same purchase again
    with the same idempotency key. Credits arrive through the webhook like any purchase.
    """
    if purchase_id is None:
        purchase = _auto_topup_start(account_id=account_id)
    else:
        purchase = Purchase.objects.filter(
            id=purchase_id, status=Purchase.Status.PENDING, stripe_payment_intent_id__isnull=True, is_auto_topup=True
        ).first()
    if purchase is None:
        return None
    profile = BillingProfile.objects.get(account_id=account_id)
    try:
        _purchase_charge(purchase=purchase, profile=profile, off_session=True)
    except PaymentDeclined:
        return Purchase.objects.get(id=purchase.id)
    return Purchase.objects.get(id=purchase.id)


def _auto_topup_start(*, account_id: int) -> Purchase | None:
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().filter(account_id=account_id).first()
        if profile is None or not profile.auto_topup_enabled or profile.auto_topup_in_flight_id is not None:
            return None
        if not profile.default_payment_method_id or not profile.stripe_customer_id:
            return None
        if profile.auto_topup_retry_after is not None and profile.auto_topup_retry_after > timezone.now():
            return None
        balance = Account.objects.values_list("balance", flat=True).get(id=account_id)
        if balance >= profile.auto_topup_threshold:
            return None
        quote = fees.quote(
            method=Purchase.Method.CARD, credits_cents=money.nanos_to_cents_floor(profile.auto_topup_amount)
        )
        purchase = _purchase_create(account=profile.account, quote=quote, is_auto_topup=True)
        profile.auto_topup_in_flight = purchase
        profile.save(update_fields=["auto_topup_in_flight"])
    logger.info("account %s: auto top-up %s started (balance %s below %s)", account_id, purchase.id, balance, profile.auto_topup_threshold)
    return purchase


def purchase_succeed(
    *,
    purchase_id: int,
    amount_cents: int | None = None,
    payment_intent_id: str | None = None,
    crypto_charge_id: str | None = None,
) -> Purchase:
    """The processor says the payment went through: grant the credits as a new lot, once.

    Idempotent (a replayed webhook or the reconcile job finds it done) and accepts a purchase
    that was marked failed or canceled: money that arrived late is never lost.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).select_related("account").get(id=purchase_id)
        if purchase.status in _PURCHASE_DONE:
            return purchase
        if amount_cents is not None and amount_cents != purchase.total_cents:
            logger.error("purchase %s: paid %s cents, expected %s", purchase.id, amount_cents, purchase.total_cents)
            raise WebhookRejected(f"Amount {amount_cents} does not match purchase {purchase.id}")
        for field, value in (("stripe_payment_intent_id", payment_intent_id), ("crypto_charge_id", crypto_charge_id)):
            current = getattr(purchase, field)
            if value and current and current != value:
                raise WebhookRejected(f"Purchase {purchase.id} belongs to another payment")
            if value and not current:
                setattr(purchase, field, value)
        purchase.status = Purchase.Status.SUCCEEDED
        purchase.succeeded_at = timezone.now()
        purchase.failure_reason = ""
        purchase.save()
        source = CreditLot.Source.CARD if purchase.method == Purchase.Method.CARD else CreditLot.Source.CRYPTO
        credits_grant(
            account=purchase.account,
            amount=purchase.credits,
            idempotency_key=f"purchase:{purchase.id}",
            kind=LedgerEntry.Kind.PURCHASE,
            lot_source=source,
            purchase=purchase,
            memo=("auto top-up" if purchase.is_auto_topup else f"{purchase.method} purchase"),
            reference=purchase.stripe_payment_intent_id or purchase.crypto_charge_id or "",
        )
        if purchase.is_auto_topup:
            BillingProfile.objects.filter(account_id=purchase.account_id, auto_topup_in_flight=purchase).update(
                auto_topup_in_flight=None
            )
            BillingProfile.objects.filter(account_id=purchase.account_id).update(
                auto_topup_failures=0, auto_topup_retry_after=None
            )
    logger.info("purchase %s succeeded: %s nano-dollars granted to account %s", purchase.id, purchase.credits, purchase.account_id)
    return purchase


_PURCHASE_DONE = (Purchase.Status.SUCCEEDED, Purchase.Status.REFUNDED, Purchase.Status.PARTIALLY_REFUNDED)


def purchase_fail(
    *, purchase_id: int, reason: str, payment_intent_id: str | None = None, status: str = Purchase.Status.FAILED
) -> Purchase:
    """A payment that did not go through (``failed``) or was given up (``canceled``). Only a pending
    purchase changes: a failure reported after a success (out of order) is ignored."""
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).select_related("account__owner").get(id=purchase_id)
        if purchase.status != Purchase.Status.PENDING:
            if payment_intent_id and not purchase.stripe_payment_intent_id:
                # e.g. the failure webhook of a decline whose error did not name the payment
                Purchase.objects.filter(id=purchase.id).update(stripe_payment_intent_id=payment_intent_id)
            return purchase
        purchase.status = status
        purchase.failure_reason = reason[:300]
        if payment_intent_id and not purchase.stripe_payment_intent_id:
            purchase.stripe_payment_intent_id = payment_intent_id
        purchase.save()
        if purchase.is_auto_topup:
            auto_topup_failed(purchase=purchase, reason=reason, counts=status == Purchase.Status.FAILED)
    logger.info("purchase %s %s: %s", purchase.id, status, reason)
    return purchase
