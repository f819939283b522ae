"""Staff users for the console's tests, and posting an action form as the page does."""

from __future__ import annotations

import itertools
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from accounts.staff.roles import LEAD_GROUP, SUPPORT_GROUP, roles_ensure

PASSWORD = "a-long-passphrase-for-staff"
_staff = itertools.count(1)


def make_staff(role: str = "support", *, email: str | None = None):
    """A person in the "Support" or "Support lead" group (the groups are remade after a test flush)."""
    roles_ensure()
    email = email or f"{role}{next(_staff)}@staff.example.com"
    user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
    user.groups.add(Group.objects.get(name=LEAD_GROUP if role == "lead" else SUPPORT_GROUP))
    return user


def token() -> str:
    return secrets.token_urlsafe(24)


def post_action(client, url: str, **fields):
    """POST a staff form (with a fresh one-time token unless given) and follow to the page it lands on."""
    fields.setdefault("idempotency_key", token())
    return client.post(url, fields, follow=True)


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []
