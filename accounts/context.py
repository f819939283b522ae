"""Which account the dashboard shows: the one place every dashboard view resolves it.

A signed-in user works either in their personal account or in an organization they belong to
(the switcher in the layout; the choice lives in the session). In an organization, credits, keys,
activity, BYOK and settings are the organization's, and the user's role decides what they may do:
members use the organization and see their own keys; admins also buy credits, refund, change
privacy, manage BYOK, guardrails and members, and see every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from . import selectors, services
from .models import Account, Membership

SESSION_KEY = "dashboard_account"


@dataclass(frozen=True)
class DashboardContext:
    account: Account  # what the pages show and change
    personal: Account  # the user's own account
    role: str  # "owner" (personal account), "admin" or "member"
    organizations: list[Membership] = field(default_factory=list)  # every organization seat of the user

    @property
    def is_organization(self) -> bool:
        return self.account.kind == Account.Kind.ORGANIZATION

    @property
    def is_admin(self) -> bool:
        return self.role in ("owner", Membership.Role.ADMIN)


def dashboard_context(request: HttpRequest) -> DashboardContext:
    """The current context of the signed-in user (resolved once per request)."""
    cached = getattr(request, "_dashboard_context", None)
    if cached is not None:
        return cached
    user = request.user
    personal = selectors.account_for_user(user=user) or services.account_get_or_create_personal(user=user)
    seats = list(
        Membership.objects.select_related("account")
        .filter(user=user, account__kind=Account.Kind.ORGANIZATION, account__closed_at__isnull=True)
        .order_by("created_at", "id")
    )
    chosen = request.session.get(SESSION_KEY)
    context = DashboardContext(account=personal, personal=personal, role="owner", organizations=seats)
    for seat in seats:
        if seat.account.public_id == chosen:
            context = DashboardContext(account=seat.account, personal=personal, role=seat.role, organizations=seats)
            break
    else:
        if chosen is not None:  # no longer a member (removed, left): back to the personal account
            request.session.pop(SESSION_KEY, None)
    request._dashboard_context = context
    return context


def dashboard_account(request: HttpRequest, *, admin: bool = False) -> Account:
    """The account the dashboard works on; with ``admin``, refuse (403) a member of an organization."""
    context = dashboard_context(request)
    if admin and not context.is_admin:
        raise PermissionDenied("Only organization admins can do this.")
    return context.account


def dashboard_key_creator(request: HttpRequest):
    """Whose keys the user may see and manage here: everyone's (None) for an admin, else their own."""
    return None if dashboard_context(request).is_admin else request.user


def dashboard_switch(request: HttpRequest, *, public_id: str) -> Account:
    """Switch to the organization ``public_id`` (one of the user's) or to "personal"."""
    request._dashboard_context = None
    if public_id == "personal":
        request.session.pop(SESSION_KEY, None)
        return dashboard_context(request).account
    for seat in dashboard_context(request).organizations:
        if seat.account.public_id == public_id:
            request.session[SESSION_KEY] = public_id
            request._dashboard_context = None
            return dashboard_context(request).account
    raise PermissionDenied("You are not a member of that organization.")


def dashboard(request: HttpRequest) -> dict:
    """Template context processor: the switcher's data for the layout."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"dash": dashboard_context(request)}
