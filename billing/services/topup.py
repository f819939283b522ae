"""Auto top-up: its settings, the trigger after usage, and the count of declines that switches it off.

The charge itself is a purchase: ``purchases.auto_topup_charge`` (purchases import this module).
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account
from openrouter_site.sql import marks

from .. import fees, money, notifications
from ..errors import AutoTopupInvalid, CardRequired
from ..models import BillingProfile, Purchase
from .cards import billing_profile_ensure

logger = logging.getLogger("openrouter.billing")
AUTO_TOPUP_TASK = "billing.tasks.auto_topup_charge"


def auto_topup_configure(*, account: Account, enabled: bool, threshold: object, amount: object) -> BillingProfile:
    """Settings: on/off, the balance under which to buy, and how much to buy (fee on top)."""
    threshold_cents = fees.amount_parse_cents(threshold, what="threshold")
    amount_cents = fees.amount_parse_cents(amount, what="top-up amount")
    _low, high = fees.purchase_limits_cents()
    if threshold_cents < 0 or threshold_cents > high:
        raise AutoTopupInvalid(f"The threshold must be between $0 and {money.cents_to_display(high)}")
    fees.purchase_amount_check(amount_cents)
    with transaction.atomic():
        profile = billing_profile_ensure(account=account)
        profile = BillingProfile.objects.select_for_update().get(id=profile.id)
        if enabled and not profile.default_payment_method_id:
            raise CardRequired("Save a card before turning on auto top-up.")
        if enabled and not profile.auto_topup_enabled:
            profile.auto_topup_failures = 0
            profile.auto_topup_retry_after = None
            profile.auto_topup_disabled_reason = ""
        profile.auto_topup_enabled = enabled
        profile.auto_topup_threshold = money.cents_to_nanos(threshold_cents)
        profile.auto_topup_amount = money.cents_to_nanos(amount_cents)
        profile.save()
    return profile


def auto_topup_maybe_trigger(*, balances: dict[int, int]) -> list[int]:
    """After usage lowered these accounts' balances (``{account id: new balance}``): queue one
    top-up for each that crossed its threshold and has none in flight. Call inside the usage
    transaction; the task is queued after the commit."""
    if not balances:
        return []
    ids = sorted(balances)
    # Plain SQL: the settlement writer calls this for every batch that spends.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT account_id, auto_topup_threshold FROM {BillingProfile._meta.db_table} "
            f"WHERE account_id IN ({marks(len(ids))}) AND auto_topup_enabled = %s AND auto_topup_in_flight_id IS NULL "
            "AND (auto_topup_retry_after IS NULL OR auto_topup_retry_after <= %s)",
            [*ids, True, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        rows = cursor.fetchall()
    due = [account_id for account_id, threshold in rows if balances[account_id] < threshold]
    for account_id in due:
        transaction.on_commit(lambda a=account_id: _topup_queue(a), robust=True)
    return due


def _topup_queue(account_id: int) -> None:
    """Queue ``billing.tasks.auto_topup_charge`` by name: the tasks module imports these services,
    so importing it here would close a cycle. (A registered task runs eagerly where so configured.)"""
    current_app.signature(AUTO_TOPUP_TASK, kwargs={"account_id": account_id}).delay()


def auto_topup_failed(*, purchase: Purchase, reason: str, counts: bool) -> None:
    """Inside purchase_fail's transaction: clear the in-flight mark; count a decline; switch the
    feature off (and tell the user by email) after ``BILLING_AUTO_TOPUP_MAX_FAILURES`` in a row."""
    profile = BillingProfile.objects.select_for_update().filter(account_id=purchase.account_id).first()
    if profile is None:
        return
    if profile.auto_topup_in_flight_id == purchase.id:
        profile.auto_topup_in_flight = None
    if counts:
        profile.auto_topup_failures += 1
        profile.auto_topup_retry_after = timezone.now() + dt.timedelta(seconds=settings.BILLING_AUTO_TOPUP_RETRY_SECONDS)
        if profile.auto_topup_enabled and profile.auto_topup_failures >= settings.BILLING_AUTO_TOPUP_MAX_FAILURES:
            profile.auto_topup_enabled = False
            profile.auto_topup_disabled_reason = (
                f"Turned off after {profile.auto_topup_failures} failed top-ups in a row. Last error: {reason}"
            )[:300]
            account_id = purchase.account_id
            transaction.on_commit(lambda: notifications.auto_topup_disabled_send(account_id=account_id), robust=True)
            logger.warning("account %s: auto top-up disabled after %s failures", account_id, profile.auto_topup_failures)
    profile.save()


def auto_topup_pause(*, account: Account, reason: str) -> BillingProfile:
    """Support: switch auto top-up off (e.g. a card that keeps failing), saying why on the credits page."""
    with transaction.atomic():
        profile = billing_profile_ensure(account=account)
        profile = BillingProfile.objects.select_for_update().get(id=profile.id)
        profile.auto_topup_enabled = False
        profile.auto_topup_disabled_reason = reason[:300]
        profile.save(update_fields=["auto_topup_enabled", "auto_topup_disabled_reason"])
    return profile


def auto_topup_resume(*, account: Account, reset_failures: bool = True) -> BillingProfile:
    """Support: switch auto top-up back on (a saved card is required), clearing the count of declines."""
    with transaction.atomic():
        profile = billing_profile_ensure(account=account)
        profile = BillingProfile.objects.select_for_update().get(id=profile.id)
        if not profile.default_payment_method_id:
            raise CardRequired("The account has no saved card; auto top-up cannot be turned on.")
        profile.auto_topup_enabled = True
        profile.auto_topup_disabled_reason = ""
        if reset_failures:
            profile.auto_topup_failures = 0
            profile.auto_topup_retry_after = None
        profile.save()
    return profile


def auto_topup_cancel(*, account: Account, reason: str) -> None:
    """Turn auto top-up off for good (the account was deleted)."""
    BillingProfile.objects.filter(account=account).update(auto_topup_enabled=False, auto_topup_disabled_reason=reason[:300])
