"""The ledger: grants, lot consumption, settling generations, and one-lot moves.

Balances change only here with a ledger entry, the account row locked. Refunds and expiry move
a single lot through ``ledger_move``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account
from activity.records import GenerationRecord
from activity.selectors import generation_ids_stored
from activity.services import generations_insert
from openrouter_site.sql import marks, row_lock, rows_insert

from .. import money
from ..counters import BYOK_WINDOW_SUFFIX, Settlement, counters, holds_release
from ..models import CreditLot, LedgerEntry, Purchase
from .topup import auto_topup_maybe_trigger

logger = logging.getLogger("openrouter.billing")


LOT_LIFETIME = dt.timedelta(days=365)
REFUND_WINDOW = dt.timedelta(hours=24)


def credits_grant(
    *,
    account: Account,
    amount: int,
    idempotency_key: str,
    kind: str = LedgerEntry.Kind.GRANT,
    lot_source: str = CreditLot.Source.PROMOTIONAL,
    purchase: Purchase | None = None,
    memo: str = "",
    reference: str = "",
) -> LedgerEntry:
    """Add ``amount`` nano-dollars to an account as a new credit lot, once per ``idempotency_key``.

    Grants are promotional lots (never refundable); purchases pass their ``Purchase`` and
    the lot's source. Every lot expires a year after it arrived. A balance below zero (a request
    that cost more than its hold is charged in full) is paid back from the new lot first.
    """
    if amount <= 0:
        raise ValueError("a grant must be positive")
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            locked = Account.objects.select_for_update().get(id=account.id)
            new_balance = locked.balance + amount
            entry = LedgerEntry.objects.create(
                account=locked,
                kind=kind,
                amount=amount,
                balance_after=new_balance,
                idempotency_key=idempotency_key,
                memo=memo,
                reference=reference,
            )
            now = timezone.now()
            debt = min(max(-locked.balance, 0), amount)  # usage charged beyond the lots is paid first
            CreditLot.objects.create(
                account=locked,
                source=lot_source,
                purchase=purchase,
                amount=amount,
                remaining=amount - debt,
                created_at=now,
                expires_at=now + LOT_LIFETIME,
                refundable_until=now + REFUND_WINDOW if lot_source == CreditLot.Source.CARD else None,
            )
            purchased = amount if kind == LedgerEntry.Kind.PURCHASE else 0
            Account.objects.filter(id=locked.id).update(
                balance=F("balance") + amount,
                total_credits=F("total_credits") + amount,
                total_purchased=F("total_purchased") + purchased,
            )
            transaction.on_commit(lambda: counters().adjust(account_id=locked.id, delta=amount))
    except IntegrityError:
        return LedgerEntry.objects.get(idempotency_key=idempotency_key)
    account.refresh_from_db()
    return entry


def lots_consume(*, account_id: int, amount: int) -> int:
    """Take ``amount`` from the account's lots, oldest first. Call inside a transaction that
    holds the account row lock. Returns what could not be taken (0 when lots cover it).

    Plain SQL (two statements when one lot covers it): the settlement writer calls it for every
    batch, and the ORM's query building cost several times the statements themselves."""
    left = amount
    lots = CreditLot._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, remaining FROM {lots} WHERE account_id = %s AND remaining > 0 AND expired_at IS NULL "
            f"ORDER BY created_at, id{row_lock()}",
            [account_id],
        )
        takes = []
        for lot_id, remaining in cursor.fetchall():
            if left <= 0:
                break
            take = min(remaining, left)
            takes.append((take, lot_id))
            left -= take
        for take, lot_id in takes:
            cursor.execute(f"UPDATE {lots} SET remaining = remaining - %s WHERE id = %s", [take, lot_id])
    if left:
        logger.warning("account %s: usage of %s nano-dollars exceeded its credit lots (balance below zero)", account_id, left)
    return left


def generations_settle(*, records: list[GenerationRecord]) -> int:
    """Record finished generations and charge their cost, in one transaction.

    Idempotent per generation id: a record already stored is neither recorded nor
    charged again. Returns how many records were new. Holds are released in the
    counters after the commit, for every record passed in.
    """
    if not records:
        return 0
    ids = [r.id for r in records]
    with transaction.atomic():
        done = generation_ids_stored(ids=ids)
        fresh = [r for r in records if r.id not in done]
        by_account: dict[int, list[GenerationRecord]] = defaultdict(list)
        for record in fresh:
            by_account[record.account_id].append(record)
        account_ids = sorted(by_account)
        balances = _accounts_lock(account_ids)
        entries: list[tuple] = []
        lowered: dict[int, int] = {}
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        for account_id in account_ids:
            if account_id not in balances:
                logger.warning("settlement for a deleted account %s dropped", account_id)
                continue
            running = balances[account_id]
            total = 0
            for record in by_account[account_id]:
                if record.cost <= 0:
                    continue
                running -= record.cost
                total += record.cost
                entries.append(
                    (account_id, LedgerEntry.Kind.USAGE.value, -record.cost, running, f"gen:{record.id}", record.id, "", now)
                )
            if total:
                _account_charge(account_id, total)
                lots_consume(account_id=account_id, amount=total)
                lowered[account_id] = running
        generations_insert(records=[r for r in fresh if r.account_id in balances])
        _ledger_insert(entries)
        settlements = []
        for record in records:
            charged = record.id not in done and record.account_id in balances
            settlements.extend(settlements_of(record, charged=charged))
        transaction.on_commit(lambda: holds_release(settlements))
        # Usage that took a balance under its auto top-up threshold queues a top-up (after the commit).
        auto_topup_maybe_trigger(balances=lowered)
    return len(fresh)


# The settlement writer's statements, in plain SQL: it runs them for every batch, and the ORM's
# query building cost several times the statements themselves (``bench/settle.py``).


def _accounts_lock(account_ids: list[int]) -> dict[int, int]:
    """{account id: balance} of the accounts that exist, their rows locked in id order."""
    if not account_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, balance FROM {Account._meta.db_table} WHERE id IN ({marks(len(account_ids))}) "
            f"ORDER BY id{row_lock()}",
            account_ids,
        )
        return dict(cursor.fetchall())


def _account_charge(account_id: int, total: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Account._meta.db_table} SET balance = balance - %s, total_usage = total_usage + %s WHERE id = %s",
            [total, total, account_id],
        )


LEDGER_COLUMNS = ("account_id", "kind", "amount", "balance_after", "idempotency_key", "reference", "memo", "created_at")


def _ledger_insert(rows: list[tuple]) -> None:
    """Usage entries, in the order of ``LEDGER_COLUMNS`` (unique idempotency keys: a repeat fails the batch)."""
    rows_insert(table=LedgerEntry._meta.db_table, columns=LEDGER_COLUMNS, rows=rows)


def settlements_of(record: GenerationRecord, *, charged: bool = True) -> list[Settlement]:
    """The counter updates a settled record makes: its holds released, its charge (0 when not
    ``charged``) on the balance and the key's window. A key that counts BYOK usage in its limit
    spends in a ``+byok`` window; the other variant of the window is kept current too, so that
    switching ``include_byok_in_limit`` back and forth never reads a stale sum."""
    cost = record.cost if charged else 0
    byok = record.upstream_cost if charged and record.is_byok else 0
    window = record.key_window
    with_byok = window is not None and window.endswith(BYOK_WINDOW_SUFFIX)
    budgets = []
    for subject, budget_window, budget_held in record.budget_holds:
        budget_byok = budget_window.endswith(BYOK_WINDOW_SUFFIX)
        budgets.append((subject, budget_window, budget_held, cost + byok if budget_byok else cost))
        if cost + byok:  # the other variant of the window is kept current too (the flag may be switched)
            other = budget_window.removesuffix(BYOK_WINDOW_SUFFIX) if budget_byok else budget_window + BYOK_WINDOW_SUFFIX
            budgets.append((subject, other, 0, cost if budget_byok else cost + byok))
    items = [
        Settlement(
            account_id=record.account_id, key_hash=record.key_hash, window=window, held=record.held, charged=cost,
            key_held=record.key_held, key_charged=cost + byok if with_byok else cost, budgets=tuple(budgets),
        )
    ]
    if window is not None and cost + byok:
        other = window.removesuffix(BYOK_WINDOW_SUFFIX) if with_byok else window + BYOK_WINDOW_SUFFIX
        items.append(
            Settlement(
                account_id=record.account_id, key_hash=record.key_hash, window=other, held=0, charged=0,
                key_held=0, key_charged=cost if with_byok else cost + byok,
            )
        )
    return items


def ledger_move(
    *,
    account_id: int,
    lot: CreditLot,
    amount: int,
    kind: str,
    idempotency_key: str,
    memo: str,
    reference: str = "",
    purchased: bool = False,
) -> LedgerEntry:
    """Move ``amount`` (negative: credits leaving) into one lot and the balance, with its ledger entry.

    For refunds, their reversal and expiry. Call inside a transaction holding the account row
    lock. ``total_credits`` moves with the balance, so ``balance == total_credits - total_usage``
    stays true; ``purchased`` moves ``total_purchased`` too (a refund un-buys credits).
    """
    balance = Account.objects.values_list("balance", flat=True).get(id=account_id)
    entry = LedgerEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=balance + amount,
        idempotency_key=idempotency_key,
        memo=memo,
        reference=reference,
    )
    CreditLot.objects.filter(id=lot.id).update(remaining=F("remaining") + amount)
    Account.objects.filter(id=account_id).update(
        balance=F("balance") + amount,
        total_credits=F("total_credits") + amount,
        total_purchased=F("total_purchased") + (amount if purchased else 0),
    )
    return entry


def signup_allowance_grant(*, account: Account) -> LedgerEntry | None:
    """The free allowance of a new account (``SIGNUP_FREE_CREDITS_USD``): promotional, once per account."""
    amount = money.usd_to_nanos(settings.SIGNUP_FREE_CREDITS_USD or "0")
    if amount <= 0:
        return None
    return credits_grant(
        account=account,
        amount=amount,
        idempotency_key=f"signup:{account.id}",
        lot_source=CreditLot.Source.PROMOTIONAL,
        memo="signup allowance",
    )
