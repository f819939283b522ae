"""The ledger: grants, lot consumption, settling generations, and one-lot moves.

Balances change only here with a ledger entry, the account row locked. Refunds and expiry move
a single lot through ``_ledger_move``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, ApiKey
from activity.models import Generation
from activity.records import GenerationRecord
from activity.services import rollups_apply

from .. import money
from ..counters import Settlement, counters, holds_release
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
    the lot's source. Every lot expires a year after it arrived.
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
            CreditLot.objects.create(
                account=locked,
                source=lot_source,
                purchase=purchase,
                amount=amount,
                remaining=amount,
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
    holds the account row lock. Returns what could not be taken (0 when lots cover it)."""
    left = amount
    lots = (
        CreditLot.objects.select_for_update()
        .filter(account_id=account_id, remaining__gt=0, expired_at__isnull=True)
        .order_by("created_at", "id")
    )
    for lot in lots:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        CreditLot.objects.filter(id=lot.id).update(remaining=F("remaining") - take)
        left -= take
    if left:
        logger.error("account %s: usage of %s nano-dollars exceeded its credit lots", account_id, left)
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
        done = set(Generation.objects.filter(id__in=ids).values_list("id", flat=True))
        fresh = [r for r in records if r.id not in done]
        by_account: dict[int, list[GenerationRecord]] = defaultdict(list)
        for record in fresh:
            by_account[record.account_id].append(record)
        account_ids = sorted(by_account)
        balances = dict(
            Account.objects.select_for_update().filter(id__in=account_ids).order_by("id").values_list("id", "balance")
        )
        entries: list[LedgerEntry] = []
        lowered: dict[int, int] = {}
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
                    LedgerEntry(
                        account_id=account_id,
                        kind=LedgerEntry.Kind.USAGE,
                        amount=-record.cost,
                        balance_after=running,
                        idempotency_key=f"gen:{record.id}",
                        reference=record.id,
                    )
                )
            if total:
                Account.objects.filter(id=account_id).update(
                    balance=F("balance") - total, total_usage=F("total_usage") + total
                )
                lots_consume(account_id=account_id, amount=total)
                lowered[account_id] = running
        live_keys = set(
            ApiKey.objects.filter(id__in={r.api_key_id for r in fresh if r.api_key_id}).values_list("id", flat=True)
        )
        inserted = [r for r in fresh if r.account_id in balances]
        _insert_generations(inserted, live_keys)
        rollups_apply(rows=inserted, live_keys=live_keys)  # activity's roll-ups, same transaction (issue 8)
        LedgerEntry.objects.bulk_create(entries, batch_size=500)
        settlements = [
            Settlement(
                account_id=r.account_id,
                key_hash=r.key_hash,
                window=r.key_window,
                held=r.held,
                charged=r.cost if r.id not in done and r.account_id in balances else 0,
            )
            for r in records
        ]
        transaction.on_commit(lambda: holds_release(settlements))
        # Usage that took a balance under its auto top-up threshold queues a top-up (after the commit).
        auto_topup_maybe_trigger(balances=lowered)
    return len(fresh)


# Generations are written with one executemany rather than bulk_create: at hundreds of
# requests a second, Django's per-field SQL compilation was the writer's main cost.
_GENERATION_COLUMNS = (
    "id", "account_id", "api_key_id", "created_at", "api_type", "model", "requested_model", "provider_name",
    "provider_slug", "endpoint_id", "upstream_id", "router", "tokens_prompt", "tokens_completion",
    "tokens_reasoning", "tokens_cached", "tokens_cache_write", "cost", "cost_prompt", "cost_completion",
    "upstream_cost", "cache_discount", "is_byok", "latency_ms", "generation_time_ms", "first_token_ms",
    "finish_reason", "native_finish_reason", "streamed", "cancelled", "http_referer", "app_title", "user_agent",
    "external_user", "session_id", "provider_responses",
)


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def _insert_generations(records: list[GenerationRecord], live_keys: set[int]) -> None:
    if not records:
        return
    table = Generation._meta.db_table
    placeholders = ", ".join(["%s"] * len(_GENERATION_COLUMNS))
    sql = f"INSERT INTO {table} ({', '.join(_GENERATION_COLUMNS)}) VALUES ({placeholders})"
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (
            r.id, r.account_id, r.api_key_id if r.api_key_id in live_keys else None, adapt(r.created_at),
            r.api_type[:16], r.model[:160], r.requested_model[:160], r.provider_name[:120], r.provider_slug[:64],
            r.endpoint_id, r.upstream_id[:200], (r.router or None) and r.router[:80], r.tokens_prompt, r.tokens_completion, r.tokens_reasoning, r.tokens_cached,
            r.tokens_cache_write, r.cost, r.cost_prompt, r.cost_completion, r.upstream_cost, 0, r.is_byok,
            r.latency_ms, r.generation_time_ms, r.first_token_ms, _clip(r.finish_reason, 32),
            _clip(None if r.native_finish_reason is None else str(r.native_finish_reason), 64),
            r.streamed, r.cancelled, r.http_referer[:500], r.app_title[:200], r.user_agent[:300],
            r.external_user[:200], r.session_id[:256], orjson.dumps(r.provider_responses).decode(),
        )
        for r in records
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _ledger_move(
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
