"""Emails about money: credits about to expire, auto top-up switched off, a receipt (resent by support).

Called after the commit that decided to send them (``transaction.on_commit``); with the
console backend (the default) they are printed by the process that sends them.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from accounts.models import Account

from . import money
from .models import BillingProfile, CreditLot, Purchase

logger = logging.getLogger("openrouter.billing")


def _credits_url() -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/settings/credits" if settings.PUBLIC_BASE_URL else "/settings/credits"


def _send(*, account: Account, subject: str, body: str) -> None:
    if not account.owner.email:
        logger.warning("account %s has no email address; %r not sent", account.id, subject)
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [account.owner.email])
    logger.info("sent %r to account %s", subject, account.id)


def expiry_notice_send(*, account_id: int, lot_ids: list[int]) -> None:
    account = Account.objects.select_related("owner").get(id=account_id)
    lots = CreditLot.objects.filter(id__in=lot_ids).order_by("expires_at")
    lines = [f"  {money.nanos_to_display(lot.remaining)} on {lot.expires_at:%Y-%m-%d}" for lot in lots if lot.remaining > 0]
    if not lines:
        return
    body = (
        "Some of your credits will expire soon, one year after they were added:\n\n"
        + "\n".join(lines)
        + f"\n\nCredits are used oldest first. See your balance and history at {_credits_url()}\n"
    )
    _send(account=account, subject="Your credits expire soon", body=body)


def auto_topup_disabled_send(*, account_id: int) -> None:
    account = Account.objects.select_related("owner").get(id=account_id)
    profile = BillingProfile.objects.filter(account_id=account_id).first()
    reason = profile.auto_topup_disabled_reason if profile else ""
    body = (
        "We could not charge your saved card for an automatic top-up, several times in a row, so auto "
        f"top-up is now turned off.\n\n{reason}\n\nUpdate your card and turn it back on at {_credits_url()}\n"
    )
    _send(account=account, subject="Auto top-up turned off: your card was declined", body=body)


def receipt_send(*, purchase_id: int) -> None:
    """A purchase's receipt by email (support resends it on request)."""
    purchase = Purchase.objects.select_related("account__owner").get(id=purchase_id)
    reference = purchase.stripe_payment_intent_id or purchase.crypto_charge_id or ""
    body = (
        f"Receipt for purchase #{purchase.id} ({purchase.created_at:%Y-%m-%d %H:%M} UTC)\n\n"
        f"  Credits: {money.nanos_to_display(purchase.credits)}\n"
        f"  Fee:     {money.nanos_to_display(purchase.fee)}\n"
        f"  Total:   {money.cents_to_display(purchase.total_cents)} ({purchase.method})\n"
        f"  Status:  {purchase.get_status_display()}\n"
        f"  Reference: {reference}\n\n"
        f"See your purchases at {_credits_url()}\n"
    )
    _send(account=purchase.account, subject=f"Your receipt for purchase #{purchase.id}", body=body)
