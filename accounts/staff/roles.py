"""Staff roles: Django groups carrying the ``accounts.use_staff_console`` and ``accounts.lead_actions``
permissions ("Support" and "Support lead", made by migration 0004; superusers have every permission).

Everyone else gets a 404 from every staff page: the console does not reveal that it exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.http import Http404

from billing import money

CONSOLE_PERMISSION = "accounts.use_staff_console"
LEAD_PERMISSION = "accounts.lead_actions"
SUPPORT_GROUP = "Support"
LEAD_GROUP = "Support lead"

SUPPORT = "support"
LEAD = "lead"


def staff_role(user) -> str | None:
    """``"lead"``, ``"support"`` or None (not staff)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.has_perm(LEAD_PERMISSION):
        return LEAD
    if user.has_perm(CONSOLE_PERMISSION):
        return SUPPORT
    return None


def is_lead(user) -> bool:
    return staff_role(user) == LEAD


def adjustment_limit(role: str) -> int:
    """The largest credit adjustment (nano-dollars) one action of this role may make."""
    usd = settings.STAFF_LEAD_ADJUSTMENT_LIMIT_USD if role == LEAD else settings.STAFF_SUPPORT_ADJUSTMENT_LIMIT_USD
    return money.usd_to_nanos(usd)


@dataclass(frozen=True)
class Actor:
    """Who acts, from where: what every staff service is given."""

    user: object
    role: str
    ip: str | None

    @property
    def name(self) -> str:
        return getattr(self.user, "email", "") or self.user.get_username()


def staff_required(view):
    """Staff pages: 404 for anyone without a staff role (signed out included); the role is on ``request.staff_role``."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        role = staff_role(request.user)
        if role is None:
            raise Http404("Not found")
        request.staff_role = role
        return view(request, *args, **kwargs)

    return wrapper


def roles_ensure() -> None:
    """Create the two groups with their permissions (migration 0004 does it; tests after a flush too)."""
    from django.contrib.auth.models import Group, Permission

    console = Permission.objects.get(content_type__app_label="accounts", codename="use_staff_console")
    lead = Permission.objects.get(content_type__app_label="accounts", codename="lead_actions")
    support, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    support.permissions.add(console)
    leads, _ = Group.objects.get_or_create(name=LEAD_GROUP)
    leads.permissions.add(console, lead)
