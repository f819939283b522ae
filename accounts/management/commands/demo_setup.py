"""manage.py demo_setup: the demo account make run starts with; prints a fresh API key last."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.services import account_get_or_create_personal, api_key_create, user_get_or_create
from billing.money import nanos_to_usd_string, usd_to_nanos
from billing.services import credits_grant

DEMO_EMAIL = "demo@example.com"


class Command(BaseCommand):
    help = "Create the demo user (once), grant it demo credits (once) and print a new API key."

    def add_arguments(self, parser):
        parser.add_argument("--credits", default="25")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args, **options):
        with transaction.atomic():
            user, created = user_get_or_create(email=DEMO_EMAIL)
            if created:
                user.set_password(options["password"])
                user.save(update_fields=["password"])
            account = account_get_or_create_personal(user=user)
        credits_grant(
            account=account,
            amount=usd_to_nanos(options["credits"]),
            idempotency_key=f"demo-grant:{account.id}",
            memo="demo credits",
        )
        with transaction.atomic():
            _key, raw = api_key_create(account=account, name="make run", creator=user)
        account.refresh_from_db()
        self.stdout.write(f"demo account {DEMO_EMAIL} (password: {options['password']}), balance ${nanos_to_usd_string(account.balance)}")
        self.stdout.write(raw)
