"""Every write about users, accounts and API keys."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from . import keycache
from .keys import key_generate, key_hash, key_label
from .models import Account, ApiKey

User = get_user_model()


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, False
    user = User.objects.create_user(username=email[:150], email=email)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user, True


def account_get_or_create_personal(*, user) -> Account:
    with transaction.atomic():
        account = (
            Account.objects.select_for_update()
            .filter(owner=user, kind=Account.Kind.PERSONAL)
            .order_by("id")
            .first()
        )
        if account is None:
            account = Account.objects.create(owner=user, kind=Account.Kind.PERSONAL, name=user.email)
    return account


def api_key_create(
    *,
    account: Account,
    name: str,
    creator=None,
    limit: int | None = None,
    limit_reset: str | None = None,
    include_byok_in_limit: bool = False,
    is_management: bool = False,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the plaintext, which is never stored and shown once."""
    raw = key_generate()
    digest = key_hash(raw)
    api_key = ApiKey.objects.create(
        hash=digest,
        account=account,
        creator=creator,
        name=name,
        label=key_label(raw),
        limit=limit,
        limit_reset=limit_reset,
        include_byok_in_limit=include_byok_in_limit,
        is_management=is_management,
        expires_at=expires_at,
    )
    transaction.on_commit(lambda: keycache.invalidate(digest))
    return api_key, raw


_UPDATABLE = {"name", "disabled", "limit", "limit_reset", "include_byok_in_limit", "expires_at"}


def api_key_update(*, api_key: ApiKey, **changes) -> ApiKey:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
    for field, value in changes.items():
        setattr(api_key, field, value)
    api_key.updated_at = timezone.now()
    api_key.save(update_fields=[*changes, "updated_at"])
    digest = api_key.hash
    transaction.on_commit(lambda: keycache.invalidate(digest))
    return api_key


def api_key_delete(*, api_key: ApiKey) -> None:
    digest = api_key.hash
    api_key.delete()
    transaction.on_commit(lambda: keycache.invalidate(digest))


def account_settings_update(*, account: Account, allow_training_discount: bool) -> Account:
    account.allow_training_discount = allow_training_discount
    account.save(update_fields=["allow_training_discount"])
    account_id = account.id
    transaction.on_commit(lambda: keycache.invalidate_account(account_id))
    return account
