"""manage.py check_rollups: verify that the activity roll-ups (hourly and daily) equal the raw generations;
non-zero exit on any difference. ``--repair`` rebuilds the accounts that drifted from their generations."""

from django.core.management.base import BaseCommand, CommandError

from activity.selectors import rollups_drift
from activity.services import rollups_rebuild


class Command(BaseCommand):
    help = "Verify the activity roll-ups against the raw generations (sibling of check_ledger)."

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, default=None, help="only this account id")
        parser.add_argument("--repair", action="store_true", help="rebuild drifted accounts' roll-ups")

    def handle(self, *args, account=None, repair=False, **options):
        drifted = []
        for daily in (False, True):
            drift = rollups_drift(account_id=account, daily=daily)
            for row in drift[:20]:
                self.stderr.write(f"{'daily' if daily else 'hourly'} {row['group']}: raw {row['raw']} != roll-up {row['rollup']}")
            drifted += drift
        if drifted:
            if repair:
                for account_id in sorted({row["group"][0] for row in drifted}):
                    rollups_rebuild(account_id=account_id)
                    self.stdout.write(f"rebuilt the roll-ups of account {account_id}")
                return
            raise CommandError(f"{len(drifted)} roll-up group(s) differ from the raw generations")
        self.stdout.write("roll-ups ok: every hourly and daily roll-up equals the sum of its generations")
