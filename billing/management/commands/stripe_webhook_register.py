"""manage.py stripe_webhook_register URL: point the local Stripe server's webhooks at URL (make run does it)."""

from django.core.management.base import BaseCommand

from billing import stripe_client


class Command(BaseCommand):
    help = "Register this platform's webhook endpoint with localstripe (development only)."

    def add_arguments(self, parser):
        parser.add_argument("url", help="e.g. http://127.0.0.1:8000/billing/webhooks/stripe")

    def handle(self, *args, **options):
        stripe_client.local_webhook_register(url=options["url"])
        self.stdout.write(f"localstripe sends {', '.join(stripe_client.WEBHOOK_EVENTS)} to {options['url']}")
