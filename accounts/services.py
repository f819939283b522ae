"""Every write about users, accounts and API keys."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import byok_cache, keycache
from .keys import key_generate, key_hash, key_label
from .models import Account, ApiKey, ProviderKey
from .secrets import encrypt, mask, rotate

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


# --- BYOK provider keys ------------------------------------------------------------------------


def provider_key_create(
    *,
    account: Account,
    provider,
    key: str,
    name: str | None = None,
    is_fallback: bool = False,
    always_use: bool = False,
    disabled: bool = False,
    allowed_models: list[str] | None = None,
    allowed_api_key_hashes: list[str] | None = None,
    allowed_user_ids: list[str] | None = None,
) -> ProviderKey:
    """Store a provider key the account brought: encrypted, with a masked label; last in its provider's order."""
    key = key.strip()
    if not key:
        raise ValueError("a provider key must not be empty")
    with transaction.atomic():
        last = (
            ProviderKey.objects.filter(account=account, provider=provider, deleted_at__isnull=True)
            .aggregate(last=Max("sort_order"))["last"]
        )
        provider_key = ProviderKey.objects.create(
            account=account,
            provider=provider,
            encrypted_key=encrypt(key),
            label=mask(key),
            name=name,
            is_fallback=is_fallback,
            always_use=always_use,
            disabled=disabled,
            sort_order=0 if last is None else last + 1,
            allowed_models=allowed_models,
            allowed_api_key_hashes=allowed_api_key_hashes,
            allowed_user_ids=allowed_user_ids,
        )
        account_id = account.id
        transaction.on_commit(lambda: byok_cache.invalidate(account_id))
    return provider_key


_PROVIDER_KEY_UPDATABLE = {
    "name",
    "disabled",
    "is_fallback",
    "always_use",
    "allowed_models",
    "allowed_api_key_hashes",
    "allowed_user_ids",
}


def provider_key_update(*, provider_key: ProviderKey, key: str | None = None, **changes) -> ProviderKey:
    """Change a provider key's settings; ``key`` rotates the secret in place (new token, new label)."""
    unknown = set(changes) - _PROVIDER_KEY_UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
    if provider_key.deleted_at is not None:
        raise ValueError("a deleted provider key cannot be updated")
    fields = dict(changes)
    if key is not None:
        key = key.strip()
        if not key:
            raise ValueError("a provider key must not be empty")
        fields["encrypted_key"] = encrypt(key)
        fields["label"] = mask(key)
    with transaction.atomic():
        for field, value in fields.items():
            setattr(provider_key, field, value)
        provider_key.updated_at = timezone.now()
        provider_key.save(update_fields=[*fields, "updated_at"])
        account_id = provider_key.account_id
        transaction.on_commit(lambda: byok_cache.invalidate(account_id))
    return provider_key


def provider_key_delete(*, provider_key: ProviderKey) -> None:
    """Soft delete, as OpenRouter's: the key material is wiped, the row stays marked deleted."""
    with transaction.atomic():
        now = timezone.now()
        provider_key.encrypted_key = ""
        provider_key.deleted_at = now
        provider_key.updated_at = now
        provider_key.save(update_fields=["encrypted_key", "deleted_at", "updated_at"])
        account_id = provider_key.account_id
        transaction.on_commit(lambda: byok_cache.invalidate(account_id))


def provider_keys_reencrypt() -> int:
    """Re-encrypt every stored provider key under the primary BYOK encryption key (after a rotation)."""
    changed = 0
    ids = ProviderKey.objects.filter(deleted_at__isnull=True).values_list("id", flat=True)
    for key_id in list(ids):
        with transaction.atomic():
            row = ProviderKey.objects.select_for_update().filter(id=key_id, deleted_at__isnull=True).first()
            if row is None:
                continue
            row.encrypted_key = rotate(row.encrypted_key)  # raises InvalidToken if no configured key opens it
            row.save(update_fields=["encrypted_key"])
            changed += 1
    return changed


def account_privacy_update(
    *,
    account: Account,
    allow_training_paid: bool,
    allow_training_free: bool,
    zdr_only: bool,
    allowed_providers: list[str],
    ignored_providers: list[str],
    allow_training_discount: bool,
) -> Account:
    """The account's privacy defaults (routing applies them to every request) and the 1% logging discount."""
    account.allow_training_paid = allow_training_paid
    account.allow_training_free = allow_training_free
    account.zdr_only = zdr_only
    account.allowed_providers = sorted(set(allowed_providers))
    account.ignored_providers = sorted(set(ignored_providers))
    account.allow_training_discount = allow_training_discount
    account.save(
        update_fields=[
            "allow_training_paid", "allow_training_free", "zdr_only", "allowed_providers", "ignored_providers",
            "allow_training_discount",
        ]
    )
    account_id = account.id
    transaction.on_commit(lambda: keycache.invalidate_account(account_id))
    return account


def user_sessions_end(*, user, keep_session_key: str | None = None) -> int:
    """Sign the user out of every browser session but ``keep_session_key`` (database sessions)."""
    from django.contrib.sessions.models import Session

    ended = 0
    user_id = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.session_key == keep_session_key:
            continue
        if session.get_decoded().get("_auth_user_id") == user_id:
            session.delete()
            ended += 1
    return ended


def account_close(*, account: Account, user) -> None:
    """The owner deletes the account: every key revoked, provider keys wiped, the user signed out
    and deactivated, and the email freed so it can sign up again as a new account. The account row,
    its ledger and generations stay (the ledger and the law need them). Credits and auto top-up are
    billing's (``billing.services.account_delete`` calls this first)."""
    from allauth.account.models import EmailAddress

    with transaction.atomic():
        locked = Account.objects.select_for_update().get(id=account.id)
        if locked.closed_at is not None:
            return
        now = timezone.now()
        hashes = list(ApiKey.objects.filter(account=locked).values_list("hash", flat=True))
        ApiKey.objects.filter(account=locked).update(disabled=True, updated_at=now)
        ProviderKey.objects.filter(account=locked, deleted_at__isnull=True).update(
            encrypted_key="", deleted_at=now, updated_at=now
        )
        locked.closed_at = now
        locked.save(update_fields=["closed_at"])
        EmailAddress.objects.filter(user=user).delete()
        closed_name = f"deleted-{user.pk}-{int(now.timestamp())}@deleted.invalid"
        user.email = closed_name
        user.username = closed_name[:150]
        user.is_active = False
        user.set_unusable_password()
        user.save(update_fields=["email", "username", "is_active", "password"])
        account_id = locked.id

        def forget() -> None:
            for digest in hashes:
                keycache.invalidate(digest)
            byok_cache.invalidate(account_id)

        transaction.on_commit(forget)
    user_sessions_end(user=user)


def provider_key_move(*, provider_key: ProviderKey, up: bool) -> None:
    """Swap a provider key with its neighbour in its provider's order (same group: prioritized or fallback)."""
    with transaction.atomic():
        siblings = list(
            ProviderKey.objects.select_for_update()
            .filter(account_id=provider_key.account_id, provider_id=provider_key.provider_id,
                    is_fallback=provider_key.is_fallback, deleted_at__isnull=True)
            .order_by("sort_order", "created_at", "id")
        )
        index = next((i for i, k in enumerate(siblings) if k.id == provider_key.id), None)
        if index is None:
            return
        other = index - 1 if up else index + 1
        if not 0 <= other < len(siblings):
            return
        siblings[index], siblings[other] = siblings[other], siblings[index]
        now = timezone.now()
        for order, key in enumerate(siblings):
            if key.sort_order != order:
                ProviderKey.objects.filter(id=key.id).update(sort_order=order, updated_at=now)
        account_id = provider_key.account_id
        transaction.on_commit(lambda: byok_cache.invalidate(account_id))
