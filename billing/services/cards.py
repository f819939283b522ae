"""Billing profile, Stripe customer, saved card."""

from __future__ import annotations

import logging

from django.db import transaction

from accounts.models import Account

from .. import stripe_client
from ..errors import CardSetupInvalid, PaymentRejected
from ..models import BillingProfile

logger = logging.getLogger("openrouter.billing")


def billing_profile_ensure(*, account: Account) -> BillingProfile:
    profile, _ = BillingProfile.objects.get_or_create(account=account)
    return profile


def stripe_customer_ensure(*, account: Account) -> str:
    """The account's Stripe customer, created on first need (outside any transaction)."""
    profile = billing_profile_ensure(account=account)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    customer_id = stripe_client.customer_create(
        email=account.owner.email, account_public_id=account.public_id, idempotency_key=f"customer:{account.public_id}"
    )
    with transaction.atomic():
        locked = BillingProfile.objects.select_for_update().get(id=profile.id)
        if not locked.stripe_customer_id:
            locked.stripe_customer_id = customer_id
            locked.save(update_fields=["stripe_customer_id"])
    return locked.stripe_customer_id


def card_setup_start(*, account: Account) -> stripe_client.SetupIntentInfo:
    """Start saving a card: a SetupIntent the page confirms with Stripe.js (``confirmCardSetup``)."""
    customer_id = stripe_customer_ensure(account=account)
    return stripe_client.setup_intent_create(customer_id=customer_id)


def card_setup_complete(*, account: Account, setup_intent_id: object) -> BillingProfile:
    """Record the card of a confirmed SetupIntent as the account's card (purchases and auto top-up)."""
    profile = billing_profile_ensure(account=account)
    if not isinstance(setup_intent_id, str) or not setup_intent_id.startswith("seti_") or len(setup_intent_id) > 120:
        raise CardSetupInvalid("Unknown card setup.")
    if not profile.stripe_customer_id:
        raise CardSetupInvalid("Start saving a card first.")
    try:
        intent = stripe_client.setup_intent_retrieve(setup_intent_id)
    except PaymentRejected:
        raise CardSetupInvalid("Unknown card setup.") from None
    if intent.customer != profile.stripe_customer_id:
        logger.warning("account %s tried to use setup intent %s of another customer", account.id, setup_intent_id)
        raise CardSetupInvalid("Unknown card setup.")
    if intent.status != "succeeded" or not intent.payment_method:
        raise CardSetupInvalid(f"The card was not confirmed (status: {intent.status}).")
    card = stripe_client.card_retrieve(intent.payment_method)
    if card.customer is None:
        stripe_client.card_attach(payment_method_id=card.id, customer_id=profile.stripe_customer_id)
    elif card.customer != profile.stripe_customer_id:
        raise CardSetupInvalid("Unknown card setup.")
    with transaction.atomic():
        locked = BillingProfile.objects.select_for_update().get(id=profile.id)
        locked.default_payment_method_id = card.id
        locked.card_brand = card.brand[:20]
        locked.card_last4 = card.last4[:4]
        # A new card re-arms auto top-up after declines.
        locked.auto_topup_failures = 0
        locked.auto_topup_retry_after = None
        locked.save(
            update_fields=[
                "default_payment_method_id", "card_brand", "card_last4", "auto_topup_failures", "auto_topup_retry_after",
            ]
        )
    logger.info("account %s saved card %s ending %s", account.id, card.brand, card.last4)
    return locked
