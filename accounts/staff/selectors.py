"""Reads for the staff console: the search box, the account page, the audit log.

Every figure on the account page comes from the selectors the user's own pages use
(billing.selectors for money, accounts.selectors for keys, activity.selectors for usage).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q
from django.utils import timezone

from activity import selectors as activity_selectors
from billing import selectors as billing_selectors
from openrouter_site.inputs import int_text
from routing.models import Endpoint, Provider

from .. import selectors as account_selectors
from ..keys import key_hash
from ..models import Account, ApiKey, AuditEntry

User = get_user_model()
HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SearchHit:
    account: Account
    matched: str  # what the query matched: "email", "key label", "generation" ...


def account_search(*, query: str, limit: int = 50) -> list[SearchHit]:
    """One box: email, account id or public id, key hash / label / the key itself, generation id,
    purchase id, Stripe PaymentIntent or charge id, crypto charge id."""
    query = query.strip()[:300]
    if not query or "\x00" in query:  # no id, email or key has a NUL (and PostgreSQL refuses it)
        return []
    hits: dict[int, SearchHit] = {}

    def add(accounts, matched: str) -> None:
        for account in accounts:
            hits.setdefault(account.id, SearchHit(account, matched))

    base = Account.objects.select_related("owner")
    account_id = int_text(query)
    if account_id is not None and account_id > 0:
        add(base.filter(id=account_id), "account id")
    add(base.filter(public_id=query), "account public id")
    if "@" in query:
        add(base.filter(owner__email__iexact=query), "email")
        if not hits:
            add(base.filter(owner__email__icontains=query).order_by("id")[:limit], "email (partial)")
    key_hashes = {query.lower()} if HASH_RE.match(query.lower()) else set()
    if query.startswith("sk-or-"):
        key_hashes.add(key_hash(query))
    if key_hashes:
        add([k.account for k in ApiKey.objects.select_related("account__owner").filter(hash__in=key_hashes)], "API key")
    add([k.account for k in ApiKey.objects.select_related("account__owner").filter(label=query)[:limit]], "key label")
    if query.startswith("gen-"):
        account_id = activity_selectors.generation_account_id(generation_id=query)
        if account_id is not None:
            add(base.filter(id=account_id), "generation")
    purchase = billing_selectors.purchase_find(query=query)
    if purchase is not None:
        add(base.filter(id=purchase.account_id), f"purchase #{purchase.id}")
    return list(hits.values())[:limit]


def account_get(*, account_id: int) -> Account | None:
    return Account.objects.select_related("owner").filter(id=account_id).first()


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    usage: activity_selectors.KeyUsage


def account_overview(*, account: Account, now: dt.datetime | None = None) -> dict:
    """Everything the account page shows."""
    now = now or timezone.now()
    keys = account_selectors.api_key_list(account=account)
    usage = activity_selectors.key_usage_by_key(key_ids=[k.id for k in keys], now=now)
    provider_keys, _ = account_selectors.provider_key_list(account=account, limit=100)
    purchases = billing_selectors.purchase_rows(account=account, now=now)
    # Purchases only the 24-hour window keeps from a refund: a lead may make the exception.
    late_refundable = {
        row.purchase.id
        for row in purchases
        if row.refund_refusal
        and not billing_selectors.refund_refusal(purchase=row.purchase, now=now, lot=row.lot, ignore_window=True)
    }
    return {
        "account": account,
        "totals": billing_selectors.account_totals(account_id=account.id),
        "ledger_sum": billing_selectors.ledger_sum(account_id=account.id),
        "drift": billing_selectors.ledger_drift(account_id=account.id),
        "lots": list(account.credit_lots.order_by("-created_at", "-id")),
        "purchases": purchases,
        "late_refundable": late_refundable,
        "refunds": billing_selectors.refunds_for_account(account=account),
        "profile": billing_selectors.billing_profile_for(account=account),
        "movements": billing_selectors.ledger_movements(account_id=account.id),
        "keys": [KeyRow(k, usage.get(k.id, activity_selectors.KeyUsage())) for k in keys],
        "provider_keys": provider_keys,
        "generations": activity_selectors.generations_recent(account_id=account.id),
        "webhooks": billing_selectors.webhook_events_for_account(account=account),
        "audit": audit_entries(account_id=account.id, limit=100),
        "expiring": billing_selectors.lots_expiring(account=account, now=now),
        "dead_letters": [
            DeadLetterRow(letter, account)
            for letter in billing_selectors.settlement_dead_letters(account_id=account.id, limit=50)
        ],
    }


@dataclass(frozen=True)
class DeadLetterRow:
    letter: object  # billing.models.SettlementDeadLetter
    account: Account | None  # None when the account no longer exists


def dead_letters_recent(*, limit: int = 200) -> list[DeadLetterRow]:
    """The newest settlement dead letters across accounts, each with its account (when it still exists)."""
    letters = billing_selectors.settlement_dead_letters(limit=limit)
    accounts = Account.objects.select_related("owner").in_bulk({letter.account_id for letter in letters})
    return [DeadLetterRow(letter, accounts.get(letter.account_id)) for letter in letters]


def api_key_of_account(*, account: Account, key_id: object) -> ApiKey | None:
    key_id = int_text(str(key_id))
    if key_id is None or key_id <= 0:
        return None
    return ApiKey.objects.select_related("account").filter(account=account, id=key_id).first()


@dataclass(frozen=True)
class AuditFilters:
    staff: str = ""  # email (or part of it) of the staff member
    account: str = ""  # account id or public id
    action: str = ""
    since: dt.date | None = None
    until: dt.date | None = None


def audit_entries(
    *, filters: AuditFilters | None = None, account_id: int | None = None, limit: int | None = 200, before_id: int | None = None
) -> list[AuditEntry]:
    """Audit entries, newest first, filtered."""
    rows = AuditEntry.objects.select_related("account", "staff").order_by("-id")
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    f = filters or AuditFilters()
    if f.staff:
        rows = rows.filter(Q(staff_name__icontains=f.staff) | Q(staff__email__icontains=f.staff))
    if f.account:
        match = Q(account__public_id=f.account)
        account_id = int_text(f.account)
        if account_id is not None and account_id > 0:
            match |= Q(account_id=account_id)
        rows = rows.filter(match)
    if f.action:
        rows = rows.filter(action=f.action)
    if f.since:
        rows = rows.filter(created_at__date__gte=f.since)
    if f.until:
        rows = rows.filter(created_at__date__lte=f.until)
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    return list(rows if limit is None else rows[:limit])


def catalog_for_outages() -> list:
    """Providers with their active endpoints (the lead's outage switches)."""
    endpoints = Endpoint.objects.filter(active=True, model__active=True).select_related("model").order_by("model__slug", "tag")
    return list(Provider.objects.prefetch_related(Prefetch("endpoints", queryset=endpoints, to_attr="live_endpoints")).order_by("slug"))
