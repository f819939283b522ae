"""Reads about accounts and keys."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from .models import Account, ApiKey, Membership, ProviderKey

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


def provider_key_list(
    *, account: Account, provider_id: int | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[ProviderKey], int]:
    """The account's live BYOK credentials (a page, and how many match), in routing order per provider."""
    keys = ProviderKey.objects.filter(account=account, deleted_at__isnull=True)
    if provider_id is not None:
        keys = keys.filter(provider_id=provider_id)
    total = keys.count()
    page = keys.select_related("provider", "account").order_by(
        "provider__slug", "is_fallback", "sort_order", "created_at", "id"
    )[offset : offset + limit]
    return list(page), total


def provider_key_get(*, account: Account, key_id) -> ProviderKey | None:
    """One live BYOK credential of the account; None for another account's or a deleted one."""
    return (
        ProviderKey.objects.select_related("provider", "account")
        .filter(account=account, id=key_id, deleted_at__isnull=True)
        .first()
    )


def api_key_hashes_not_owned(*, account: Account, hashes: list[str]) -> list[str]:
    """Which of ``hashes`` are not keys of the account."""
    owned = set(ApiKey.objects.filter(account=account, hash__in=hashes).values_list("hash", flat=True))
    return [h for h in hashes if h not in owned]


def byok_provider_get(*, slug: str):
    """The catalog provider a BYOK credential may be stored for, by its catalog slug; None if unknown."""
    from routing.models import Provider

    return Provider.objects.filter(slug=slug).first()


def member_choices(*, account: Account) -> list[tuple[str, str]]:
    """An organization's members as (their personal account's public id, email), for a member filter;
    empty for a personal account (its owner is its only member)."""
    if account.kind != Account.Kind.ORGANIZATION:
        return []
    users = Membership.objects.filter(account=account).order_by("created_at", "id").values_list("user_id", "user__email")
    public_ids = dict(
        Account.objects.filter(owner_id__in=[u for u, _ in users], kind=Account.Kind.PERSONAL).values_list("owner_id", "public_id")
    )
    return [(public_ids[u], email) for u, email in users if u in public_ids]


def member_key_ids(*, account: Account, user_public_id: str) -> list[int] | None:
    """The ids of the keys a member of ``account`` created there; None if the user is not a member
    (the owner of a personal account is its only member)."""
    owner = Account.objects.filter(public_id=user_public_id, kind=Account.Kind.PERSONAL).values_list("owner_id", flat=True).first()
    if owner is None:
        return None
    member = owner == account.owner_id if account.kind == Account.Kind.PERSONAL else (
        Membership.objects.filter(account=account, user_id=owner).exists()
    )
    if not member:
        return None
    return list(ApiKey.objects.filter(account=account, creator_id=owner).values_list("id", flat=True))
