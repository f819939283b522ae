"""manage.py check_ledger: verify every account's balance, ledger and credit lots, and every purchase's
credits; non-zero exit on any drift."""

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import ledger_drift, purchase_drift


class Command(BaseCommand):
    help = "Verify every account's balance against its ledger and lots, and every purchase against its credits."

    def handle(self, *args, **options):
        drift = ledger_drift()
        for row in drift:
            self.stderr.write(
                f"account {row['account_id']}: balance {row['balance']}, ledger {row['ledger']}, lots {row['lots']}"
            )
        purchases = purchase_drift()
        for row in purchases:
            self.stderr.write(
                f"purchase {row['purchase_id']} (account {row['account_id']}, {row['status']}): "
                f"ledger {row['ledger']}, lot {row['lot']}"
            )
        if drift or purchases:
            raise CommandError(f"{len(drift)} account(s) and {len(purchases)} purchase(s) drifted")
        self.stdout.write(
            "ledger ok: every balance equals the sum of its entries and of its credit lots; every purchase matches its credits"
        )
