"""Reads about accounts and keys."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from .models import Account, ApiKey

User = get_user_model()


def api_key_get_by_hash(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("account").filter(hash=key_hash).first()


def api_key_list(*, account: Account, include_disabled: bool = True, offset: int = 0, limit: int | None = None):
    """The account's inference keys (management keys are not listed), newest first."""
    keys = ApiKey.objects.filter(account=account, is_management=False).order_by("-created_at", "-id")
    if not include_disabled:
        keys = keys.filter(disabled=False)
    if limit is None:
        return list(keys[offset:])
    return list(keys[offset : offset + limit])


def account_for_user(*, user) -> Account | None:
    return Account.objects.filter(owner=user, kind=Account.Kind.PERSONAL).order_by("id").first()
