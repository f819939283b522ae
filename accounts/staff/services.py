"""Every staff action. Each one: a reason is mandatory, the change and its audit entry commit in
one transaction, and a form token (``idempotency_key``) makes a repeated submission do nothing.

The owning app's service does the change (billing moves money, accounts changes keys, routing
marks outages); this module checks the role and the input, and writes the audit entry.
Emails go out after the commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction

from billing import money, notifications
from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.models import LedgerEntry, Purchase
from openrouter_site.errors import ApiError, BadRequest, Forbidden, NotFound
from openrouter_site.inputs import int_text
from routing import services as routing_services
from routing.models import Endpoint, Provider

from .. import services as account_services
from ..models import Account, ApiKey, AuditEntry
from .roles import LEAD, Actor, adjustment_limit

REASON_MAX = 2000
USER_REASON_MAX = 200
TICKET_MAX = 100
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,80}$")
AMOUNT_RE = re.compile(r"^\$?\s*(\d{1,9})(?:\.(\d{1,2}))?$")


class StaffActionInvalid(BadRequest):
    message = "This action cannot be done."


class StaffActionForbidden(Forbidden):
    message = "Only a support lead can do this."


# --- Input checks, shared by every action -------------------------------------------------------


def _text(value: object, *, what: str, limit: int, required: bool) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if "\x00" in text:  # PostgreSQL refuses NUL in text
        raise StaffActionInvalid(f"The {what} contains a NUL character.")
    if required and not text:
        raise StaffActionInvalid(f"A {what} is required.")
    if len(text) > limit:
        raise StaffActionInvalid(f"The {what} is too long (at most {limit} characters).")
    return text


def _token(value: object) -> str:
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        raise StaffActionInvalid("This form has expired or was tampered with; reload the page and try again.")
    return value


def amount_parse(value: object) -> int:
    """A positive amount of US dollars typed by staff ('5', '12.50', '$1,000') -> nano-dollars (whole cents)."""
    text = value.strip().replace(",", "") if isinstance(value, str) else ""
    match = AMOUNT_RE.match(text)
    if not match:
        raise StaffActionInvalid("Enter a positive amount in US dollars with at most two decimals, e.g. 5 or 12.50.")
    cents = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    if cents <= 0:
        raise StaffActionInvalid("The amount must be more than $0.00.")
    return money.cents_to_nanos(cents)


def _lead_only(actor: Actor, what: str) -> None:
    if actor.role != LEAD:
        raise StaffActionForbidden(f"Only a support lead can {what}.")


def _repeat(*, key: str, action: str, account: Account | None) -> AuditEntry | None:
    """The entry an earlier submission of this form made, if any (then nothing is done again)."""
    entry = AuditEntry.objects.filter(idempotency_key=key).first()
    if entry is None:
        return None
    if entry.action != action or entry.account_id != (account.id if account else None):
        raise StaffActionInvalid("This form was already used for another action; reload the page.")
    return entry


def audit_record(
    *,
    actor: Actor,
    action: str,
    reason: str,
    idempotency_key: str,
    account: Account | None = None,
    target: str = "",
    amount: int | None = None,
    before: dict | None = None,
    after: dict | None = None,
    user_reason: str = "",
    ticket: str = "",
) -> AuditEntry:
    """Append one audit entry (inside the action's transaction)."""
    return AuditEntry.objects.create(
        staff=actor.user,
        staff_name=actor.name[:254],
        account=account,
        action=action,
        target=target[:200],
        amount=amount,
        before=before or {},
        after=after or {},
        reason=reason,
        user_reason=user_reason,
        ticket=ticket,
        ip=actor.ip,
        idempotency_key=idempotency_key,
    )


def _once(*, key: str, action: str, account: Account | None, lock: Callable[[], object], do: Callable[[], AuditEntry]) -> AuditEntry:
    """Run ``do`` in a transaction after ``lock`` (the subject's row), unless this form token already acted."""
    try:
        with transaction.atomic():
            lock()
            entry = _repeat(key=key, action=action, account=account)
            if entry is not None:
                return entry
            return do()
    except IntegrityError:
        entry = _repeat(key=key, action=action, account=account)
        if entry is None:
            raise
        return entry


# --- Money ------------------------------------------------------------------------------------------


def account_credits_adjust(
    *,
    actor: Actor,
    account: Account,
    direction: str,
    amount: object,
    reason: object,
    user_reason: object,
    ticket: object = "",
    confirm_negative: bool = False,
    idempotency_key: object,
) -> AuditEntry:
    """Grant (goodwill, never refundable) or debit credits; the user's credit history shows
    "support adjustment: <user_reason>"; ``reason`` stays internal."""
    key = _token(idempotency_key)
    if direction not in ("grant", "debit"):
        raise StaffActionInvalid("Choose grant or debit.")
    nanos = amount_parse(amount)
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    user_reason = _text(user_reason, what="reason shown to the user", limit=USER_REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    limit = adjustment_limit(actor.role)
    if nanos > limit:
        who = "a support lead" if actor.role == LEAD else "support (a lead can do more)"
        raise StaffActionForbidden(f"{money.nanos_to_display(nanos)} is over the limit of {money.nanos_to_display(limit)} per adjustment for {who}.")
    if confirm_negative:
        _lead_only(actor, "take a balance below zero")
    action = AuditEntry.Action.CREDIT_GRANT if direction == "grant" else AuditEntry.Action.CREDIT_DEBIT
    earlier = _repeat(key=key, action=action, account=account)
    if earlier is not None:
        return earlier
    made: list[AuditEntry] = []

    def audit(entry: LedgerEntry) -> None:
        made.append(
            audit_record(
                actor=actor,
                action=action,
                account=account,
                target=f"ledger:{entry.id}",
                amount=entry.amount,
                before={"balance": entry.balance_after - entry.amount},
                after={"balance": entry.balance_after},
                reason=reason,
                user_reason=user_reason,
                ticket=ticket,
                idempotency_key=key,
            )
        )

    try:
        billing_services.credits_adjust(
            account=account,
            amount=nanos if direction == "grant" else -nanos,
            idempotency_key=f"support:{key}",
            memo=f"support adjustment: {user_reason}"[:300],
            reference=ticket,
            allow_negative=confirm_negative,
            on_entry=audit,
        )
    except IntegrityError:
        if not AuditEntry.objects.filter(idempotency_key=key).exists():
            raise
        # A concurrent submission of the same form won the race; its entry is the answer.
    return made[0] if made else _repeat(key=key, action=action, account=account) or _missing(key)


def purchase_refund_late(
    *, actor: Actor, account: Account, purchase_id: object, reason: object, ticket: object = "", idempotency_key: object
) -> AuditEntry:
    """A support lead's goodwill exception: refund a card purchase's unused credits after the 24 hours,
    through Stripe, exactly as the user's own refund (the fee never comes back)."""
    key = _token(idempotency_key)
    _lead_only(actor, "refund outside the 24-hour window")
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    purchase_id = int_text(str(purchase_id))
    if purchase_id is None or purchase_id <= 0:
        raise NotFound("No such purchase")
    earlier = _repeat(key=key, action=AuditEntry.Action.REFUND, account=account)
    if earlier is not None:
        return earlier
    made: list[AuditEntry] = []

    def audit(refund) -> None:
        balance = Account.objects.values_list("balance", flat=True).get(id=account.id)
        made.append(
            audit_record(
                actor=actor,
                action=AuditEntry.Action.REFUND,
                account=account,
                target=f"purchase:{refund.purchase_id} refund:{refund.id}",
                amount=-refund.credits,
                before={"balance": balance + refund.credits},
                after={"balance": balance, "refund_cents": refund.amount_cents},
                reason=reason,
                ticket=ticket,
                idempotency_key=key,
            )
        )

    try:
        billing_services.purchase_refund(
            account=account, purchase_id=int(purchase_id), ignore_window=True, on_reserve=audit
        )
    except ApiError:
        # When the credits had already been reserved, the audit entry is committed with them;
        # Stripe's answer (pending, or refused and put back) is on the purchase. Either way the
        # message goes to the page.
        raise
    return made[0]


# --- Keys, auto top-up, notices, notes ------------------------------------------------------------


def api_key_disabled_set(
    *, actor: Actor, api_key: ApiKey, disabled: bool, reason: object, ticket: object = "", idempotency_key: object
) -> AuditEntry:
    """Disable or enable a key; every gateway process forgets it at once (the key cache's invalidation)."""
    key = _token(idempotency_key)
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    action = AuditEntry.Action.KEY_DISABLE if disabled else AuditEntry.Action.KEY_ENABLE
    account = api_key.account

    def do() -> AuditEntry:
        row = ApiKey.objects.get(id=api_key.id)
        before = row.disabled
        account_services.api_key_update(api_key=row, disabled=disabled)
        return audit_record(
            actor=actor,
            action=action,
            account=account,
            target=f"key:{row.hash} ({row.name})",
            before={"disabled": before},
            after={"disabled": disabled},
            reason=reason,
            ticket=ticket,
            idempotency_key=key,
        )

    return _once(key=key, action=action, account=account, lock=lambda: ApiKey.objects.select_for_update().get(id=api_key.id), do=do)


def auto_topup_state_set(
    *, actor: Actor, account: Account, enabled: bool, reason: object, ticket: object = "", idempotency_key: object
) -> AuditEntry:
    """Pause auto top-up, or resume it with its failure count reset."""
    key = _token(idempotency_key)
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    action = AuditEntry.Action.AUTO_TOPUP_RESUME if enabled else AuditEntry.Action.AUTO_TOPUP_PAUSE

    def do() -> AuditEntry:
        profile = billing_selectors.billing_profile_for(account=account)
        before = {"enabled": profile.auto_topup_enabled, "failures": profile.auto_topup_failures}
        if enabled:
            profile = billing_services.auto_topup_resume(account=account, reset_failures=True)
        else:
            profile = billing_services.auto_topup_pause(account=account, reason="Paused by support.")
        return audit_record(
            actor=actor,
            action=action,
            account=account,
            target="auto_topup",
            before=before,
            after={"enabled": profile.auto_topup_enabled, "failures": profile.auto_topup_failures},
            reason=reason,
            ticket=ticket,
            idempotency_key=key,
        )

    return _once(key=key, action=action, account=account, lock=lambda: _lock_account(account), do=do)


def notice_resend(
    *, actor: Actor, account: Account, kind: str, purchase_id: object = None, reason: object, idempotency_key: object
) -> AuditEntry:
    """Email a purchase's receipt, or the notice of credits expiring soon, again (after the commit)."""
    key = _token(idempotency_key)
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    if kind == "receipt":
        action = AuditEntry.Action.RECEIPT_RESEND
        purchase_id = int_text(str(purchase_id))
        if purchase_id is None or purchase_id <= 0:
            raise NotFound("No such purchase")
        purchase = billing_selectors.purchase_for_account(account=account, purchase_id=purchase_id)
        if purchase is None:
            raise NotFound("No such purchase")
        if purchase.status == Purchase.Status.PENDING:
            raise StaffActionInvalid("This purchase is still pending; there is no receipt yet.")
        target = f"purchase:{purchase.id}"

        def send() -> None:
            notifications.receipt_send(purchase_id=purchase.id)

    elif kind == "expiry":
        action = AuditEntry.Action.EXPIRY_NOTICE_RESEND
        lots = billing_selectors.lots_expiring(account=account)
        if not lots:
            raise StaffActionInvalid(f"No credits of this account expire in the next {settings.BILLING_EXPIRY_NOTICE_DAYS} days.")
        lot_ids = [lot.id for lot in lots]
        target = "lots:" + ",".join(str(i) for i in lot_ids)

        def send() -> None:
            notifications.expiry_notice_send(account_id=account.id, lot_ids=lot_ids)

    else:
        raise StaffActionInvalid("Unknown notice.")

    def do() -> AuditEntry:
        transaction.on_commit(send, robust=True)
        return audit_record(
            actor=actor, action=action, account=account, target=target, reason=reason, idempotency_key=key
        )

    return _once(key=key, action=action, account=account, lock=lambda: _lock_account(account), do=do)


def account_note_add(*, actor: Actor, account: Account, note: object, ticket: object = "", idempotency_key: object) -> AuditEntry:
    """A free-text note on the account (internal)."""
    key = _token(idempotency_key)
    note = _text(note, what="note", limit=REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    return _once(
        key=key,
        action=AuditEntry.Action.NOTE,
        account=account,
        lock=lambda: _lock_account(account),
        do=lambda: audit_record(
            actor=actor, action=AuditEntry.Action.NOTE, account=account, reason=note, ticket=ticket, idempotency_key=key
        ),
    )


# --- Catalog ----------------------------------------------------------------------------------------


def outage_set(
    *,
    actor: Actor,
    kind: str,
    object_id: object,
    down: bool,
    reason: object,
    ticket: object = "",
    idempotency_key: object,
) -> AuditEntry:
    """A support lead declares a provider or one endpoint down (routing skips it) or up again."""
    key = _token(idempotency_key)
    _lead_only(actor, "declare an outage")
    reason = _text(reason, what="reason", limit=REASON_MAX, required=True)
    ticket = _text(ticket, what="ticket reference", limit=TICKET_MAX, required=False)
    models = {"provider": Provider, "endpoint": Endpoint}
    object_id = int_text(str(object_id))
    if kind not in models or object_id is None or object_id <= 0:
        raise NotFound("No such provider or endpoint")
    row = models[kind].objects.filter(id=object_id).first()
    if row is None:
        raise NotFound("No such provider or endpoint")
    action = AuditEntry.Action.OUTAGE_ON if down else AuditEntry.Action.OUTAGE_OFF

    def do() -> AuditEntry:
        current = models[kind].objects.get(id=row.id)
        before = current.outage
        routing_services.catalog_outage_set(**{kind: current}, down=down)
        return audit_record(
            actor=actor,
            action=action,
            target=f"{kind}:{current.id} ({current})",
            before={"outage": before},
            after={"outage": down},
            reason=reason,
            ticket=ticket,
            idempotency_key=key,
        )

    return _once(
        key=key,
        action=action,
        account=None,
        lock=lambda: models[kind].objects.select_for_update().get(id=row.id),
        do=do,
    )


def _missing(key: str) -> AuditEntry:
    """The ledger already has this form's adjustment but no audit entry names it: never expected."""
    raise StaffActionInvalid(f"This form ({key[:8]}…) was already processed; reload the page to see the result.")


def _lock_account(account: Account) -> Account:
    return Account.objects.select_for_update().get(id=account.id)
