"""manage.py create_api_key EMAIL [--credits USD] [--name NAME] [--limit USD] [--management]

Creates the user and account if needed, grants the credits through the ledger and
prints the new key as the last line of stdout.
"""

from __future__ import annotations

import secrets

from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.services import account_get_or_create_personal, api_key_create, user_get_or_create
from billing.money import MoneyError, nanos_to_usd_string, usd_to_nanos
from billing.services import credits_grant


class Command(BaseCommand):
    help = "Create an API key for EMAIL (creating the user if needed); prints the key last."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--credits", default=None, help="USD to grant to the account (promotional)")
        parser.add_argument("--name", default="Default key")
        parser.add_argument("--limit", default=None, help="the key's credit limit in USD")
        parser.add_argument("--limit-reset", choices=["daily", "weekly", "monthly"], default=None)
        parser.add_argument("--management", action="store_true", help="create a management key")

    def handle(self, *args, **options):
        email = options["email"]
        try:
            validate_email(email)
        except Exception:
            raise CommandError(f"not an email address: {email!r}") from None
        try:
            credits = usd_to_nanos(options["credits"]) if options["credits"] else 0
            limit = usd_to_nanos(options["limit"]) if options["limit"] else None
        except MoneyError as exc:
            raise CommandError(str(exc)) from None
        if credits < 0 or (limit is not None and limit < 0):
            raise CommandError("amounts must not be negative")
        with transaction.atomic():
            user, created = user_get_or_create(email=email)
            account = account_get_or_create_personal(user=user)
        if credits:
            credits_grant(
                account=account,
                amount=credits,
                idempotency_key=f"cli-grant:{account.id}:{secrets.token_hex(8)}",
                memo="granted by create_api_key",
            )
        with transaction.atomic():
            _key, raw = api_key_create(
                account=account,
                name=options["name"],
                creator=user,
                limit=limit,
                limit_reset=options["limit_reset"],
                is_management=options["management"],
            )
        account.refresh_from_db()
        kind = "management key" if options["management"] else "API key"
        self.stdout.write(
            f"{'created' if created else 'found'} user {email}; account {account.public_id} "
            f"balance ${nanos_to_usd_string(account.balance)}; new {kind}:"
        )
        self.stdout.write(raw)
