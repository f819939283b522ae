"""Guardrails and organization members: every write (``noun_verb`` services) and read (selectors).

A guardrail enforces nothing until it is assigned to keys or members. Every change invalidates the
account's cached key info at once (after commit), so the gateway applies it on the next request.
A user's public id (``user_id`` in the API) is their personal account's ``public_id``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing.counters import counters

from . import keycache
from .models import Account, ApiKey, Guardrail, GuardrailKeyAssignment, GuardrailMemberAssignment, Membership

User = get_user_model()

GUARDRAIL_FIELDS = (
    "name", "description", "limit", "reset_interval", "include_byok_in_budgets", "allowed_models",
    "ignored_models", "allowed_providers", "ignored_providers", "enforce_zdr_anthropic", "enforce_zdr_openai",
    "enforce_zdr_google", "enforce_zdr_xai", "enforce_zdr_other", "enable_free_model_publication",
    "enable_free_model_training", "enable_paid_model_training",
)


def _invalidate_account_after_commit(account_id: int, *, budgets: bool = False) -> None:
    """After commit: every process re-reads the account's keys' guardrails; with ``budgets``, the
    budget mirrors of its keys and members are dropped too (re-read from the database), since they
    were not kept up to date while no budget applied to them."""
    subjects: list[str] = []
    if budgets:
        subjects = [f"k:{h}" for h in ApiKey.objects.filter(account_id=account_id).values_list("hash", flat=True)]
        subjects += [f"m:{account_id}:{u}" for u in set(
            ApiKey.objects.filter(account_id=account_id, creator_id__isnull=False).values_list("creator_id", flat=True)
        )]

    def apply() -> None:
        if subjects:
            counters().forget_budgets(subjects)
        keycache.invalidate_account(account_id)

    transaction.on_commit(apply)


# --- selectors -------------------------------------------------------------------------------------


def guardrail_list(*, account: Account, offset: int = 0, limit: int = 50) -> tuple[list[Guardrail], int]:
    rows = Guardrail.objects.filter(account=account).order_by("created_at", "id")
    return list(rows[offset : offset + limit]), rows.count()


def guardrail_get(*, account: Account, guardrail_id) -> Guardrail | None:
    """The account's guardrail; None for an unknown id or another account's."""
    return Guardrail.objects.filter(account=account, id=guardrail_id).first()


def guardrail_key_assignments(
    *, account: Account, guardrail: Guardrail | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[GuardrailKeyAssignment], int]:
    rows = GuardrailKeyAssignment.objects.select_related("api_key").filter(guardrail__account=account)
    if guardrail is not None:
        rows = rows.filter(guardrail=guardrail)
    rows = rows.order_by("created_at", "id")
    return list(rows[offset : offset + limit]), rows.count()


def guardrail_member_assignments(
    *, account: Account, guardrail: Guardrail | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[GuardrailMemberAssignment], int]:
    rows = GuardrailMemberAssignment.objects.select_related("user", "account").filter(account=account)
    if guardrail is not None:
        rows = rows.filter(guardrail=guardrail)
    rows = rows.order_by("created_at", "id")
    return list(rows[offset : offset + limit]), rows.count()


def user_public_ids(*, user_ids) -> dict[int, str]:
    """Each user's public id (their personal account's)."""
    rows = Account.objects.filter(owner_id__in=list(user_ids), kind=Account.Kind.PERSONAL).order_by("id")
    found: dict[int, str] = {}
    for owner_id, public_id in rows.values_list("owner_id", "public_id"):
        found.setdefault(owner_id, public_id)
    return found


def account_members(*, account: Account) -> QuerySet[Membership] | list:
    """The account's members with their roles: an organization's memberships; a personal account's owner."""
    if account.kind == Account.Kind.ORGANIZATION:
        return Membership.objects.select_related("user").filter(account=account).order_by("created_at", "id")
    return [Membership(account=account, user=account.owner, role=Membership.Role.ADMIN)]


def account_member_users_by_public_id(*, account: Account, public_ids: list[str]) -> tuple[dict[str, object], list[str]]:
    """``public_ids`` that are members of ``account`` -> their users, and the ids that are not."""
    member_ids = {m.user_id for m in account_members(account=account)}
    rows = Account.objects.filter(
        public_id__in=public_ids, kind=Account.Kind.PERSONAL, owner_id__in=member_ids
    ).select_related("owner")
    found = {row.public_id: row.owner for row in rows}
    return found, [p for p in public_ids if p not in found]


def account_keys_by_hash(*, account: Account, hashes: list[str]) -> tuple[list[ApiKey], list[str]]:
    """The account's inference keys among ``hashes``, and the hashes that are not."""
    keys = list(ApiKey.objects.filter(account=account, is_management=False, hash__in=hashes))
    owned = {k.hash for k in keys}
    return keys, [h for h in hashes if h not in owned]


# --- services --------------------------------------------------------------------------------------


def guardrail_create(*, account: Account, **fields) -> Guardrail:
    unknown = set(fields) - set(GUARDRAIL_FIELDS)
    if unknown:
        raise ValueError(f"unknown guardrail fields: {', '.join(sorted(unknown))}")
    guardrail = Guardrail.objects.create(account=account, **fields)
    return guardrail  # not assigned: nothing to invalidate


def guardrail_update(*, guardrail: Guardrail, **changes) -> Guardrail:
    unknown = set(changes) - set(GUARDRAIL_FIELDS)
    if unknown:
        raise ValueError(f"unknown guardrail fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        for field, value in changes.items():
            setattr(guardrail, field, value)
        guardrail.updated_at = timezone.now()
        guardrail.save(update_fields=[*changes, "updated_at"])
        _invalidate_account_after_commit(guardrail.account_id, budgets=True)
    return guardrail


def guardrail_delete(*, guardrail: Guardrail) -> None:
    with transaction.atomic():
        account_id = guardrail.account_id
        guardrail.delete()  # its assignments go with it
        _invalidate_account_after_commit(account_id)


def guardrail_keys_assign(*, guardrail: Guardrail, keys: list[ApiKey], assigned_by: str | None) -> int:
    """Assign ``keys`` (of the guardrail's account) to it; a key's previous guardrail is replaced."""
    with transaction.atomic():
        for key in keys:
            GuardrailKeyAssignment.objects.update_or_create(
                api_key=key, defaults={"guardrail": guardrail, "assigned_by": assigned_by, "created_at": timezone.now()}
            )
        _invalidate_account_after_commit(guardrail.account_id, budgets=True)
    return len(keys)


def guardrail_keys_unassign(*, guardrail: Guardrail, key_hashes: list[str]) -> int:
    with transaction.atomic():
        count, _ = GuardrailKeyAssignment.objects.filter(guardrail=guardrail, api_key__hash__in=key_hashes).delete()
        _invalidate_account_after_commit(guardrail.account_id)
    return count


def guardrail_members_assign(*, guardrail: Guardrail, users: list, assigned_by: str | None) -> int:
    """Assign members of the guardrail's account to it; a member's previous guardrail there is replaced."""
    with transaction.atomic():
        for user in users:
            GuardrailMemberAssignment.objects.update_or_create(
                account_id=guardrail.account_id,
                user=user,
                defaults={"guardrail": guardrail, "assigned_by": assigned_by, "created_at": timezone.now()},
            )
        _invalidate_account_after_commit(guardrail.account_id, budgets=True)
    return len(users)


def guardrail_members_unassign(*, guardrail: Guardrail, users: list) -> int:
    with transaction.atomic():
        count, _ = GuardrailMemberAssignment.objects.filter(guardrail=guardrail, user__in=users).delete()
        _invalidate_account_after_commit(guardrail.account_id)
    return count


def catalog_unknown(*, providers: list[str] | None = None, models: list[str] | None = None) -> list[str]:
    """Which provider slugs or model slugs (with or without a ``:variant``) the catalog does not know."""
    from routing.models import Model, Provider

    if providers is not None:
        known = {s.lower() for s in Provider.objects.filter(slug__in=[p.lower() for p in providers]).values_list("slug", flat=True)}
        return [p for p in providers if p.lower() not in known]
    wanted = [m.lower() for m in models or ()] + [m.lower().partition(":")[0] for m in models or ()]
    rows = Model.objects.filter(slug__in=wanted).values_list("slug", "canonical_slug")
    known = {s.lower() for row in rows for s in row} | {
        s.lower() for s in Model.objects.filter(canonical_slug__in=wanted).values_list("canonical_slug", flat=True)
    }
    return [m for m in models or () if m.lower() not in known and m.lower().partition(":")[0] not in known]
