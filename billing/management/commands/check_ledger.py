"""manage.py check_ledger: verify that every balance equals the sum of its ledger; non-zero exit on drift."""

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import ledger_drift


class Command(BaseCommand):
    help = "Verify every account's balance against its ledger."

    def handle(self, *args, **options):
        drift = ledger_drift()
        if drift:
            for row in drift:
                self.stderr.write(
                    f"account {row['account_id']}: balance {row['balance']}, ledger {row['ledger']}, lots {row['lots']}"
                )
            raise CommandError(f"{len(drift)} account(s) drifted")
        self.stdout.write("ledger ok: every balance equals the sum of its entries and of its credit lots")
