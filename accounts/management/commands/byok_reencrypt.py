"""manage.py byok_reencrypt: re-encrypt stored BYOK provider keys under the first BYOK_ENCRYPTION_KEYS key.

Run it after prepending a new key to BYOK_ENCRYPTION_KEYS; once it is done the old key can be removed.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.secrets import InvalidToken
from accounts.services import provider_keys_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored BYOK provider key under the primary BYOK encryption key."

    def handle(self, *args, **options) -> None:
        try:
            count = provider_keys_reencrypt()
        except InvalidToken:
            raise CommandError("a stored provider key does not decrypt with any BYOK_ENCRYPTION_KEYS key") from None
        if options["verbosity"] >= 1:
            self.stdout.write(f"re-encrypted {count} provider key(s)")
