"""Expiry: a lot's unused credits leave a year after they arrived; the owner is warned before."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account

from .. import notifications
from ..models import CreditLot, LedgerEntry
from .holds import credits_hold, hold_settle
from .ledger import ledger_move

logger = logging.getLogger("openrouter.billing")


def lots_expire(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Expire what is left of every lot older than its expiry (a year), idempotently.

    Each lot: hold its remainder (running requests keep theirs), then one transaction writes
    an EXPIRY entry (``expire:<lot id>``), empties the lot and lowers the balance. A lot whose
    remainder is held by running requests is left for the next run.
    """
    now = now or timezone.now()
    outcomes: Counter[str] = Counter()
    due = CreditLot.objects.filter(expires_at__lte=now, expired_at__isnull=True).order_by("expires_at", "id")
    for lot_id, account_id, remaining in due.values_list("id", "account_id", "remaining")[:5000]:
        held = credits_hold(account_id=account_id, amount=remaining, whole_cents=False) if remaining else 0
        if held < remaining:
            if held:
                hold_settle(account_id=account_id, held=held, charged=0)
            logger.warning("lot %s: credits in use by running requests; expiry deferred", lot_id)
            outcomes["deferred"] += 1
            continue
        try:
            expired = _lot_expire(lot_id=lot_id, now=now)
        except BaseException:
            hold_settle(account_id=account_id, held=held, charged=0)
            raise
        if held or expired:
            hold_settle(account_id=account_id, held=held, charged=expired)
        outcomes["expired" if expired else "emptied"] += 1
    if outcomes:
        logger.info("lots expired: %s", dict(outcomes))
    return dict(outcomes)


def _lot_expire(*, lot_id: int, now: dt.datetime) -> int:
    with transaction.atomic():
        account_id = CreditLot.objects.values_list("account_id", flat=True).get(id=lot_id)
        Account.objects.select_for_update().get(id=account_id)
        lot = CreditLot.objects.select_for_update().get(id=lot_id)
        if lot.expired_at is not None:
            return 0
        amount = lot.remaining
        if amount:
            ledger_move(
                account_id=account_id,
                lot=lot,
                amount=-amount,
                kind=LedgerEntry.Kind.EXPIRY,
                idempotency_key=f"expire:{lot.id}",
                memo=f"unused credits of lot {lot.id} expired (received {lot.created_at:%Y-%m-%d})",
            )
        CreditLot.objects.filter(id=lot.id).update(expired_at=now)
    return amount


def lots_expiry_notify(*, now: dt.datetime | None = None) -> int:
    """Email each account whose unused credits expire within ``BILLING_EXPIRY_NOTICE_DAYS``, once per lot."""
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=settings.BILLING_EXPIRY_NOTICE_DAYS)
    lots = CreditLot.objects.filter(
        expires_at__lte=horizon, expired_at__isnull=True, expiry_notified_at__isnull=True, remaining__gt=0
    )
    by_account: dict[int, list[int]] = defaultdict(list)
    for lot_id, account_id in lots.values_list("id", "account_id"):
        by_account[account_id].append(lot_id)
    sent = 0
    for account_id, lot_ids in by_account.items():
        with transaction.atomic():
            claimed = list(
                CreditLot.objects.select_for_update()
                .filter(id__in=lot_ids, expiry_notified_at__isnull=True)
                .values_list("id", flat=True)
            )
            if not claimed:
                continue
            CreditLot.objects.filter(id__in=claimed).update(expiry_notified_at=now)
            transaction.on_commit(
                lambda a=account_id, c=claimed: notifications.expiry_notice_send(account_id=a, lot_ids=c), robust=True
            )
        sent += 1
    return sent


def lots_forfeit(*, account_id: int, reason: str) -> int:
    """Every lot's remainder leaves the account (it was deleted): one ADJUSTMENT entry per lot
    (``forfeit:<lot id>``, idempotent), the lot closed. Credits held by still-running requests stay
    until they settle; returns the nano-dollars forfeited."""
    now = timezone.now()
    total = 0
    lots = CreditLot.objects.filter(account_id=account_id, expired_at__isnull=True).order_by("created_at", "id")
    for lot_id, remaining in lots.values_list("id", "remaining"):
        held = credits_hold(account_id=account_id, amount=remaining, whole_cents=False) if remaining else 0
        amount = min(held, remaining)
        try:
            with transaction.atomic():
                Account.objects.select_for_update().get(id=account_id)
                lot = CreditLot.objects.select_for_update().get(id=lot_id)
                if lot.expired_at is None:
                    amount = min(amount, lot.remaining)
                    if amount:
                        ledger_move(
                            account_id=account_id, lot=lot, amount=-amount, kind=LedgerEntry.Kind.ADJUSTMENT,
                            idempotency_key=f"forfeit:{lot.id}", memo=reason[:300],
                        )
                    if amount == lot.remaining:
                        CreditLot.objects.filter(id=lot.id).update(expired_at=now)
                else:
                    amount = 0
        except BaseException:
            if held:
                hold_settle(account_id=account_id, held=held, charged=0)
            raise
        if held or amount:
            hold_settle(account_id=account_id, held=held, charged=amount)
        total += amount
    return total
