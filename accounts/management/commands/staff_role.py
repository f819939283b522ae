"""manage.py staff_role EMAIL support|lead|none

Puts an existing user in the "Support" or "Support lead" group (the staff console at /staff/),
or takes them out of both.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts.staff.roles import LEAD_GROUP, SUPPORT_GROUP, roles_ensure


class Command(BaseCommand):
    help = "Give a user a staff role in the support console (support or lead), or none."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("role", choices=["support", "lead", "none"])

    def handle(self, *args, email: str, role: str, **options):
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email {email!r}; they sign up first.")
        roles_ensure()
        groups = Group.objects.filter(name__in=[SUPPORT_GROUP, LEAD_GROUP])
        user.groups.remove(*groups)
        if role != "none":
            user.groups.add(Group.objects.get(name=LEAD_GROUP if role == "lead" else SUPPORT_GROUP))
        self.stdout.write(f"{user.email}: {role}")
