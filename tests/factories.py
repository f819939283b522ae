"""Test data made through the real services (so the ledger is always consistent)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from django.db import transaction

from accounts.models import Account, ApiKey
from accounts.services import account_get_or_create_personal, api_key_create, user_get_or_create
from billing.money import usd_to_nanos
from billing.services import credits_grant

_counter = itertools.count(1)


@dataclass
class KeyBundle:
    raw: str
    key: ApiKey
    account: Account

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}"}


def make_account(*, email: str | None = None, credits: str = "10") -> Account:
    email = email or f"user{next(_counter)}@example.com"
    user, _ = user_get_or_create(email=email)
    account = account_get_or_create_personal(user=user)
    amount = usd_to_nanos(credits)
    if amount:
        credits_grant(account=account, amount=amount, idempotency_key=f"test-grant:{account.id}:{next(_counter)}")
    account.refresh_from_db()
    return account


def make_key(
    *,
    account: Account | None = None,
    credits: str = "10",
    limit: str | None = None,
    limit_reset: str | None = None,
    management: bool = False,
    name: str = "test key",
) -> KeyBundle:
    account = account or make_account(credits=credits)
    with transaction.atomic():
        key, raw = api_key_create(
            account=account,
            name=name,
            creator=account.owner,
            limit=usd_to_nanos(limit) if limit is not None else None,
            limit_reset=limit_reset,
            is_management=management,
        )
    return KeyBundle(raw=raw, key=key, account=account)
