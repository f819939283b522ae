"""Organizations: accounts of kind ``organization`` that several users share, with roles.

Every write here is a ``noun_verb`` service that owns its transaction. Members are ``Membership``
rows (admin or member), at most ``ORGANIZATION_MAX_MEMBERS``; the last admin can neither leave nor
be removed nor demoted. Removing a member disables the organization keys they created at once
(cached key info invalidated after commit in every process). Invitations go by email (the console
backend in development); their link works once and expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from . import keycache
from .models import Account, ApiKey, GuardrailMemberAssignment, Membership, OrganizationInvite

MAX_NAME_LENGTH = 100


class OrganizationError(Exception):
    """A refused organization action, with a message for the user (a page shows it, the API's 400/403)."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- selectors -------------------------------------------------------------------------------------


def membership_get(*, account: Account, user) -> Membership | None:
    return Membership.objects.filter(account=account, user=user).first()


def organizations_of(*, user) -> list[Membership]:
    """The user's organization seats, with their accounts, oldest first."""
    return list(
        Membership.objects.select_related("account")
        .filter(user=user, account__kind=Account.Kind.ORGANIZATION, account__closed_at__isnull=True)
        .order_by("created_at", "id")
    )


def organization_members(*, organization: Account) -> list[Membership]:
    return list(Membership.objects.select_related("user").filter(account=organization).order_by("created_at", "id"))


def organization_invites_pending(*, organization: Account) -> list[OrganizationInvite]:
    return list(
        OrganizationInvite.objects.filter(
            account=organization, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).order_by("-created_at")
    )


def invite_get_by_token(*, token: str) -> OrganizationInvite | None:
    return OrganizationInvite.objects.select_related("account").filter(token_hash=_token_hash(token)).first()


# --- services --------------------------------------------------------------------------------------


def organization_create(*, owner, name: str) -> Account:
    name = (name or "").strip()
    if not name:
        raise OrganizationError("Give the organization a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise OrganizationError(f"The name must be at most {MAX_NAME_LENGTH} characters.")
    with transaction.atomic():
        organization = Account.objects.create(
            owner=owner, kind=Account.Kind.ORGANIZATION, name=name, public_id="org_" + secrets.token_hex(12)
        )
        Membership.objects.create(account=organization, user=owner, role=Membership.Role.ADMIN)
    return organization


def _locked(organization: Account) -> Account:
    """The organization's row, locked: member changes of one organization happen one at a time."""
    return Account.objects.select_for_update().get(id=organization.id, kind=Account.Kind.ORGANIZATION)


def _check_seat(organization: Account) -> None:
    limit = settings.ORGANIZATION_MAX_MEMBERS
    if Membership.objects.filter(account=organization).count() >= limit:
        raise OrganizationError(
            f"This organization is full: it already has {limit} members, the most an organization may have. "
            "Remove a member first, or contact support for more seats."
        )


def organization_member_add(*, organization: Account, user, role: str = Membership.Role.MEMBER) -> Membership:
    with transaction.atomic():
        _locked(organization)
        existing = membership_get(account=organization, user=user)
        if existing is not None:
            return existing
        _check_seat(organization)
        return Membership.objects.create(account=organization, user=user, role=role)


def _admins(organization: Account) -> int:
    return Membership.objects.filter(account=organization, role=Membership.Role.ADMIN).count()


def organization_member_remove(*, organization: Account, user) -> int:
    """Remove ``user`` (also how a member leaves): their organization keys are disabled at once and
    their member guardrail unassigned. Returns how many keys were disabled."""
    with transaction.atomic():
        _locked(organization)
        membership = membership_get(account=organization, user=user)
        if membership is None:
            raise OrganizationError("That user is not a member of this organization.")
        if membership.role == Membership.Role.ADMIN and _admins(organization) == 1:
            raise OrganizationError(
                "The last admin cannot leave or be removed: make another member an admin first."
            )
        membership.delete()
        GuardrailMemberAssignment.objects.filter(account=organization, user=user).delete()
        keys = ApiKey.objects.filter(account=organization, creator=user, disabled=False)
        hashes = list(keys.values_list("hash", flat=True))
        keys.update(disabled=True, updated_at=timezone.now())
        account_id = organization.id
        transaction.on_commit(lambda: keycache.invalidate_account(account_id))
    return len(hashes)


def organization_role_set(*, organization: Account, user, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise OrganizationError("The role must be admin or member.")
    with transaction.atomic():
        _locked(organization)
        membership = membership_get(account=organization, user=user)
        if membership is None:
            raise OrganizationError("That user is not a member of this organization.")
        if membership.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN and _admins(organization) == 1:
            raise OrganizationError("The last admin cannot be made a member: make another member an admin first.")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def organization_invite_create(
    *, organization: Account, email: str, invited_by, role: str = Membership.Role.MEMBER, accept_url
) -> tuple[OrganizationInvite, str]:
    """Invite ``email``; sends the link (``accept_url(token)``) after commit. Returns the invite and its token."""
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise OrganizationError("Enter a valid email address.")
    if role not in Membership.Role.values:
        raise OrganizationError("The role must be admin or member.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        _locked(organization)
        if Membership.objects.filter(account=organization, user__email__iexact=email).exists():
            raise OrganizationError(f"{email} is already a member.")
        _check_seat(organization)
        invite = OrganizationInvite.objects.create(
            account=organization, email=email, role=role, token_hash=_token_hash(token), invited_by=invited_by,
            expires_at=timezone.now() + dt.timedelta(hours=settings.ORGANIZATION_INVITE_HOURS),
        )
        link = accept_url(token)
        name = organization.name
        transaction.on_commit(
            lambda: send_mail(
                f"You are invited to join {name} on OpenRouter",
                f"{invited_by.email if invited_by else 'An admin'} invited you to join the organization {name}.\n\n"
                f"Accept the invitation (the link works once and expires in "
                f"{settings.ORGANIZATION_INVITE_HOURS} hours):\n{link}\n",
                settings.DEFAULT_FROM_EMAIL,
                [email],
                fail_silently=True,
            )
        )
    return invite, token


def organization_invite_accept(*, token: str, user) -> Membership:
    """Accept an invitation as ``user``: once, before it expires, and only while there is a seat."""
    with transaction.atomic():
        invite = (
            OrganizationInvite.objects.select_for_update().filter(token_hash=_token_hash(token or "")).first()
        )
        if invite is None or invite.revoked_at is not None:
            raise OrganizationError("This invitation link is not valid.")
        if invite.accepted_at is not None:
            raise OrganizationError("This invitation was already used.")
        if invite.expires_at <= timezone.now():
            raise OrganizationError("This invitation has expired: ask an admin for a new one.")
        if (user.email or "").strip().lower() != invite.email:
            raise OrganizationError(f"This invitation is for {invite.email}: sign in with that address to accept it.")
        organization = _locked(invite.account)
        if organization.closed_at is not None:
            raise OrganizationError("This organization no longer exists.")
        membership = membership_get(account=organization, user=user)
        if membership is None:
            _check_seat(organization)
            membership = Membership.objects.create(account=organization, user=user, role=invite.role)
        invite.accepted_at = timezone.now()
        invite.accepted_by = user
        invite.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def organization_invite_revoke(*, invite: OrganizationInvite) -> None:
    invite.revoked_at = timezone.now()
    invite.save(update_fields=["revoked_at"])
