"""Every movement of credits. Each function owns its transaction.

Balances change only here, always together with a ledger entry, with the account
row locked; ``Account.balance`` therefore always equals the sum of its entries.
Counters (billing.counters) are told after the commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, ApiKey
from activity.models import Generation
from activity.records import GenerationRecord
from openrouter_site.errors import NotFound

from . import fees, money, notifications, stripe_client
from .counters import Settlement, counters
from .crypto import crypto_processor
from .errors import (
    AutoTopupInvalid,
    CardRequired,
    CardSetupInvalid,
    PaymentDeclined,
    PaymentRejected,
    PaymentUnavailable,
    RefundRefused,
    WebhookRejected,
)
from .models import BillingProfile, CreditLot, LedgerEntry, Purchase, Refund, WebhookEvent
from .selectors import refund_refusal

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
        _insert_generations([r for r in fresh if r.account_id in balances], live_keys)
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
        transaction.on_commit(lambda: counters().settle(settlements))
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
            r.api_type, r.model, r.requested_model, r.provider_name, r.provider_slug, r.endpoint_id,
            r.upstream_id[:200], r.router, r.tokens_prompt, r.tokens_completion, r.tokens_reasoning, r.tokens_cached,
            r.tokens_cache_write, r.cost, r.cost_prompt, r.cost_completion, r.upstream_cost, 0, r.is_byok,
            r.latency_ms, r.generation_time_ms, r.first_token_ms, r.finish_reason, r.native_finish_reason,
            r.streamed, r.cancelled, r.http_referer[:500], r.app_title[:200], r.user_agent[:300],
            r.external_user[:200], r.session_id[:256], orjson.dumps(r.provider_responses).decode(),
        )
        for r in records
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


# --- Holds for money leaving outside a request ---------------------------------------------------
#
# A refund or an expiry takes credits away while requests may be running against the same
# balance. Both first *hold* the amount in the credit counters, exactly as a request does, so
# running requests keep what they reserved and new ones cannot take what is leaving; the
# hold is settled (released, with the amount charged) after the ledger transaction commits.

_HOLD_KEY = "billing"  # holds that belong to no API key (no key limit applies)


def _credits_hold(*, account_id: int, amount: int, whole_cents: bool) -> int:
    """Hold up to ``amount`` of the account's available credits; returns what was held (maybe 0)."""
    store = counters()
    for _ in range(4):
        if amount <= 0:
            return 0
        result = async_to_sync(store.hold)(
            account_id=account_id, amount=amount, key_hash=_HOLD_KEY, key_limit=None, window="all"
        )
        if result.ok:
            return amount
        available = max(result.available, 0)
        amount = min(amount, money.cents_to_nanos(money.nanos_to_cents_floor(available)) if whole_cents else available)
    return 0


def _hold_settle(*, account_id: int, held: int, charged: int) -> None:
    counters().settle([Settlement(account_id=account_id, key_hash=None, window=None, held=held, charged=charged)])


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


# --- Signup allowance ----------------------------------------------------------------------------


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


# --- Billing profile, Stripe customer, saved card -----------------------------------------------


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


# --- Purchases -------------------------------------------------------------------------------------


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
    purchase = _purchase_create(account=account, quote=quote)
    try:
        charge = crypto_processor().charge_create(purchase_id=purchase.id, amount_cents=quote.total_cents)
    except PaymentUnavailable as exc:
        purchase_fail(purchase_id=purchase.id, reason=exc.message)
        raise
    Purchase.objects.filter(id=purchase.id).update(crypto_charge_id=charge.id, crypto_hosted_url=charge.hosted_url)
    purchase.refresh_from_db()
    logger.info("account %s: crypto purchase %s (charge %s) started", account.id, purchase.id, charge.id)
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
            _auto_topup_failed(purchase=purchase, reason=reason, counts=status == Purchase.Status.FAILED)
    logger.info("purchase %s %s: %s", purchase.id, status, reason)
    return purchase


def purchases_reconcile(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Settle purchases still pending after a few minutes by asking the processor (a lost webhook,
    a crashed request), give up on those that never reached it, and resolve pending refunds."""
    now = now or timezone.now()
    due = now - dt.timedelta(seconds=settings.BILLING_RECONCILE_AFTER_SECONDS)
    abandon = now - dt.timedelta(seconds=settings.BILLING_ABANDON_AFTER_SECONDS)
    outcomes: Counter[str] = Counter()
    pending = {"status": "pending", "created_at__lte": due}
    for purchase in Purchase.objects.filter(**pending).order_by("id")[:500]:
        _reconcile_count(outcomes, purchase, lambda p=purchase: _purchase_reconcile_one(purchase=p, abandon_before=abandon))
    for refund in Refund.objects.filter(**pending).select_related("purchase").order_by("id")[:500]:
        _reconcile_count(outcomes, refund, lambda r=refund: _refund_reconcile_one(refund=r, abandon_before=abandon))
    if outcomes:
        logger.info("purchases reconciled: %s", dict(outcomes))
    return dict(outcomes)


def _reconcile_count(outcomes: Counter[str], item: Purchase | Refund, reconcile: Callable[[], str]) -> None:
    """One item of the sweep: count its outcome; an unreachable processor or a bug never stops the sweep."""
    try:
        outcomes[reconcile()] += 1
    except PaymentUnavailable:
        outcomes["unreachable"] += 1
    except Exception:
        logger.exception("reconciling %s failed", item)
        outcomes["errors"] += 1


def _purchase_reconcile_one(*, purchase: Purchase, abandon_before: dt.datetime) -> str:
    stale = purchase.created_at <= abandon_before
    if purchase.method == Purchase.Method.CRYPTO:
        status = crypto_processor().charge_status(purchase.crypto_charge_id) if purchase.crypto_charge_id else None
        if status == "confirmed":
            purchase_succeed(purchase_id=purchase.id, crypto_charge_id=purchase.crypto_charge_id)
            return "succeeded"
        if status == "failed":
            purchase_fail(purchase_id=purchase.id, reason="The crypto payment failed.")
            return "failed"
    elif purchase.stripe_payment_intent_id:
        intent = stripe_client.payment_intent_retrieve(purchase.stripe_payment_intent_id)
        if intent.status == "succeeded":
            purchase_succeed(purchase_id=purchase.id, amount_cents=intent.amount, payment_intent_id=intent.id)
            return "succeeded"
        if intent.status in ("canceled", "requires_payment_method"):
            purchase_fail(purchase_id=purchase.id, reason=intent.error_message or "The payment did not go through.")
            return "failed"
        if stale and intent.status in ("requires_action", "requires_confirmation"):
            stripe_client.payment_intent_cancel(intent.id)
    if not stale:
        return "waiting"
    purchase_fail(purchase_id=purchase.id, reason="The payment was not completed in time.", status=Purchase.Status.CANCELED)
    return "abandoned"


# --- Refunds ---------------------------------------------------------------------------------------


def purchase_refund(*, account: Account, purchase_id: int) -> Refund:
    """Refund the unused credits of a card purchase, within 24 hours; the fee is not refunded.

    1. hold the refundable amount in the counters (running requests keep what they hold);
    2. in one transaction take it out of the lot and the balance (ledger entry) and record a
       pending Refund, so no request can spend it while Stripe is asked;
    3. ask Stripe, outside any transaction; 4. record the answer (a refusal puts the credits back).
    """
    purchase = Purchase.objects.select_related("lot").filter(account=account, id=purchase_id).first()
    if purchase is None:
        raise NotFound("No such purchase")
    now = timezone.now()
    refusal = refund_refusal(purchase=purchase, now=now)
    if refusal:
        raise RefundRefused(refusal)
    wanted = money.cents_to_nanos(money.nanos_to_cents_floor(purchase.lot.remaining))
    held = _credits_hold(account_id=account.id, amount=wanted, whole_cents=True)
    if held <= 0:
        raise RefundRefused("Running requests are using these credits right now; try again when they have finished.")
    try:
        refund = _refund_reserve(purchase_id=purchase.id, limit=held)
    except BaseException:
        _hold_settle(account_id=account.id, held=held, charged=0)
        raise
    _hold_settle(account_id=account.id, held=held, charged=refund.credits)
    try:
        info = stripe_client.refund_create(
            payment_intent_id=purchase.stripe_payment_intent_id,
            amount_cents=refund.amount_cents,
            idempotency_key=f"refund:{refund.id}",
            metadata={"refund_id": str(refund.id), "purchase_id": str(purchase.id)},
        )
    except PaymentUnavailable:
        # Unknown whether Stripe refunded: the refund stays pending (its credits stay out of the
        # balance) and the reconcile job asks Stripe later.
        logger.warning("refund %s: Stripe unreachable; left pending for reconciliation", refund.id)
        raise PaymentUnavailable(
            "The payment service is unreachable; your refund is pending and will be completed or undone automatically."
        ) from None
    except (PaymentRejected, PaymentDeclined) as exc:
        refund_reverse(refund_id=refund.id, reason=exc.message)
        raise RefundRefused(f"Stripe refused the refund: {exc.message}") from None
    return refund_succeed(refund_id=refund.id, stripe_refund_id=info.id)


def _refund_reserve(*, purchase_id: int, limit: int) -> Refund:
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(id=purchase_id)
        Account.objects.select_for_update().get(id=purchase.account_id)
        lot = CreditLot.objects.select_for_update().get(purchase=purchase)
        refusal = refund_refusal(purchase=purchase, now=timezone.now(), lot=lot)
        if refusal:
            raise RefundRefused(refusal)
        cents = money.nanos_to_cents_floor(min(limit, lot.remaining))
        if cents <= 0:
            raise RefundRefused("All credits of this purchase have been used; nothing is left to refund.")
        credits = money.cents_to_nanos(cents)
        refund = Refund.objects.create(purchase=purchase, credits=credits, amount_cents=cents)
        _ledger_move(
            account_id=purchase.account_id,
            lot=lot,
            amount=-credits,
            kind=LedgerEntry.Kind.REFUND,
            idempotency_key=f"refund:{refund.id}",
            memo=f"refund of purchase {purchase.id}",
            reference=purchase.stripe_payment_intent_id or "",
            purchased=True,
        )
    logger.info("refund %s of purchase %s: %s cents reserved", refund.id, purchase.id, cents)
    return refund


def refund_succeed(*, refund_id: int, stripe_refund_id: str) -> Refund:
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("purchase").get(id=refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        refund.status = Refund.Status.SUCCEEDED
        refund.stripe_refund_id = stripe_refund_id
        refund.save(update_fields=["status", "stripe_refund_id"])
        purchase = refund.purchase
        refunded = sum(
            Refund.objects.filter(purchase=purchase, status=Refund.Status.SUCCEEDED).values_list("credits", flat=True)
        )
        purchase.status = (
            Purchase.Status.REFUNDED if refunded >= purchase.credits else Purchase.Status.PARTIALLY_REFUNDED
        )
        purchase.save(update_fields=["status"])
    logger.info("refund %s succeeded (%s)", refund.id, stripe_refund_id)
    return refund


def refund_reverse(*, refund_id: int, reason: str) -> Refund:
    """Stripe refused (or never received) a refund: put its credits back into the lot, once."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("purchase").get(id=refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        account = Account.objects.select_for_update().get(id=refund.purchase.account_id)
        lot = CreditLot.objects.select_for_update().get(purchase_id=refund.purchase_id)
        _ledger_move(
            account_id=account.id,
            lot=lot,
            amount=refund.credits,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            idempotency_key=f"refund-reversal:{refund.id}",
            memo=f"refund {refund.id} not paid out; credits restored",
            purchased=True,
        )
        refund.status = Refund.Status.FAILED
        refund.failure_reason = reason[:300]
        refund.save(update_fields=["status", "failure_reason"])
        credits, account_id = refund.credits, account.id
        transaction.on_commit(lambda: counters().adjust(account_id=account_id, delta=credits))
    logger.warning("refund %s reversed: %s", refund.id, reason)
    return refund


def _refund_reconcile_one(*, refund: Refund, abandon_before: dt.datetime) -> str:
    purchase = refund.purchase
    for info in stripe_client.refunds_list(purchase.stripe_payment_intent_id):
        if info.metadata.get("refund_id") == str(refund.id):
            if info.status in ("succeeded", "pending"):
                refund_succeed(refund_id=refund.id, stripe_refund_id=info.id)
                return "refund_succeeded"
            refund_reverse(refund_id=refund.id, reason=f"Stripe refund {info.id} {info.status}")
            return "refund_reversed"
    if refund.created_at > abandon_before:
        return "refund_waiting"
    refund_reverse(refund_id=refund.id, reason="Stripe never received the refund.")
    return "refund_reversed"


# --- Expiry ----------------------------------------------------------------------------------------


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
        held = _credits_hold(account_id=account_id, amount=remaining, whole_cents=False) if remaining else 0
        if held < remaining:
            if held:
                _hold_settle(account_id=account_id, held=held, charged=0)
            logger.warning("lot %s: credits in use by running requests; expiry deferred", lot_id)
            outcomes["deferred"] += 1
            continue
        try:
            expired = _lot_expire(lot_id=lot_id, now=now)
        except BaseException:
            _hold_settle(account_id=account_id, held=held, charged=0)
            raise
        if held or expired:
            _hold_settle(account_id=account_id, held=held, charged=expired)
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
            _ledger_move(
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


# --- Auto top-up -----------------------------------------------------------------------------------


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
    now = timezone.now()
    rows = BillingProfile.objects.filter(
        account_id__in=list(balances), auto_topup_enabled=True, auto_topup_in_flight__isnull=True
    ).values_list("account_id", "auto_topup_threshold", "auto_topup_retry_after")
    due = [
        account_id
        for account_id, threshold, retry_after in rows
        if balances[account_id] < threshold and (retry_after is None or retry_after <= now)
    ]
    if due:
        from .tasks import auto_topup_charge as task

        for account_id in due:
            transaction.on_commit(lambda a=account_id: task.delay(account_id=a), robust=True)
    return due


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


def _auto_topup_failed(*, purchase: Purchase, reason: str, counts: bool) -> None:
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


# --- Webhook events --------------------------------------------------------------------------------

_EVENT_DONE = (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED)


def webhook_event_record(*, source: str, event_id: str, event_type: str, payload: dict) -> tuple[WebhookEvent, bool]:
    """Store a verified event under its unique id, once. Returns it and whether it was already handled."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(source=source, event_id=event_id[:120], type=event_type[:80], payload=payload)
        return event, False
    except IntegrityError:
        event = WebhookEvent.objects.get(source=source, event_id=event_id[:120])
        return event, event.status in _EVENT_DONE


def webhook_event_process(*, event: WebhookEvent, handler: Callable[[dict], str]) -> WebhookEvent:
    """Run ``handler`` (which returns ``processed`` or ``ignored``) on the event in one transaction,
    with the event row locked so that concurrent deliveries of it act once; record the outcome.
    A failure is recorded on the event and raised again."""
    try:
        with transaction.atomic():
            locked = WebhookEvent.objects.select_for_update().get(id=event.id)
            if locked.status in _EVENT_DONE:
                return locked
            locked.status = handler(locked.payload)
            locked.attempts += 1
            locked.error = ""
            locked.processed_at = timezone.now()
            locked.save(update_fields=["status", "attempts", "error", "processed_at"])
        return locked
    except Exception as exc:
        WebhookEvent.objects.filter(id=event.id).update(
            status=WebhookEvent.Status.FAILED, attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
