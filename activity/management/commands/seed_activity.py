"""manage.py seed_activity EMAIL --generations N: synthetic usage for the dashboard's benchmark.

Spreads N generations over the last ``--days`` days (default 365) across a few models, providers and
API keys (created if missing), in batches through ``activity.services.generations_seed`` (COPY on
PostgreSQL, then the same ``rollups_apply`` the settlement path uses). Writes no ledger entries:
the balance is untouched; the activity pages, the request log and /api/v1/activity see the rows.
"""

from __future__ import annotations

import datetime as dt
import random
import string
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from accounts.models import ApiKey
from accounts.services import account_get_or_create_personal, api_key_create, user_get_or_create
from activity.records import GenerationRecord
from activity.services import generations_seed

# (model, [(provider name, provider slug, endpoint id, prompt $/M nanos, completion $/M nanos)])
MODELS = [
    ("openai/gpt-4o-mini", [("OpenAI", "openai", 9001, 150_000_000, 600_000_000), ("Azure", "azure", 9002, 150_000_000, 600_000_000)]),
    ("anthropic/claude-3.5-sonnet", [("Anthropic", "anthropic", 9003, 3_000_000_000, 15_000_000_000), ("Amazon Bedrock", "amazon-bedrock", 9004, 3_000_000_000, 15_000_000_000)]),
    ("meta-llama/llama-3.3-70b-instruct", [("DeepInfra", "deepinfra", 9005, 230_000_000, 400_000_000), ("Together", "together", 9006, 880_000_000, 880_000_000), ("Groq", "groq", 9007, 590_000_000, 790_000_000)]),
    ("google/gemini-2.0-flash-001", [("Google AI Studio", "google-ai-studio", 9008, 100_000_000, 400_000_000)]),
    ("mistralai/mistral-small", [("Mistral", "mistral", 9009, 200_000_000, 600_000_000)]),
    ("deepseek/deepseek-chat", [("DeepSeek", "deepseek", 9010, 270_000_000, 1_100_000_000), ("DeepInfra", "deepinfra", 9011, 300_000_000, 1_000_000_000)]),
]
KEY_NAMES = ("production", "staging", "batch-jobs", "notebook")
ALPHABET = string.ascii_letters + string.digits


class Command(BaseCommand):
    help = "Seed synthetic generations (and their roll-ups) for an account, for the dashboard benchmark."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--generations", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--batch", type=int, default=50_000)
        parser.add_argument("--seed", type=int, default=8)

    def handle(self, *args, email, generations, days, batch, seed, **options):
        if generations < 1 or generations > 50_000_000:
            raise CommandError("--generations must be between 1 and 50,000,000")
        if days < 1 or days > 3650:
            raise CommandError("--days must be between 1 and 3650")
        rng = random.Random(seed)
        user, _ = user_get_or_create(email=email)
        account = account_get_or_create_personal(user=user)
        keys = {k.name: k.id for k in ApiKey.objects.filter(account=account, name__in=KEY_NAMES)}
        for name in KEY_NAMES:
            if name not in keys:
                with transaction.atomic():
                    api_key, _raw = api_key_create(account=account, name=name, creator=user)
                keys[name] = api_key.id
        key_ids = [keys[n] for n in KEY_NAMES]
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=days)
        span = (now - start).total_seconds()
        # Sorted times, oldest first: batches then touch neighbouring roll-up rows, as real traffic does.
        offsets = sorted(rng.random() * span for _ in range(generations))
        started = time.monotonic()
        written = 0
        for first in range(0, generations, batch):
            records = []
            for offset in offsets[first:first + batch]:
                created = start + dt.timedelta(seconds=offset)
                model, endpoints = MODELS[min(int(rng.random() ** 1.5 * len(MODELS)), len(MODELS) - 1)]
                provider, slug, endpoint_id, price_in, price_out = rng.choice(endpoints)
                tokens_in = rng.randint(20, 4000)
                error = rng.random() < 0.02
                tokens_out = 0 if error else rng.randint(1, 1200)
                cost_in = 0 if error else tokens_in * price_in // 1_000_000
                cost_out = tokens_out * price_out // 1_000_000
                latency = rng.randint(120, 2500)
                records.append(
                    GenerationRecord(
                        id=f"gen-{int(created.timestamp())}-{''.join(rng.choices(ALPHABET, k=20))}",
                        account_id=account.id,
                        api_key_id=key_ids[min(int(rng.random() ** 2 * len(key_ids)), len(key_ids) - 1)],
                        key_hash="",
                        key_window=None,
                        created_at=created,
                        held=0,
                        cost=cost_in + cost_out,
                        cost_prompt=cost_in,
                        cost_completion=cost_out,
                        model=model,
                        requested_model=model,
                        provider_name=provider,
                        provider_slug=slug,
                        endpoint_id=endpoint_id,
                        tokens_prompt=tokens_in,
                        tokens_completion=tokens_out,
                        latency_ms=latency,
                        generation_time_ms=latency + tokens_out * rng.randint(5, 30),
                        first_token_ms=latency,
                        finish_reason="error" if error else rng.choice(("stop", "stop", "stop", "length", "tool_calls")),
                        streamed=rng.random() < 0.6,
                        cancelled=rng.random() < 0.01,
                        app_title=rng.choice(("", "", "my-app", "notebook")),
                    )
                )
            written += generations_seed(records=records)
            self.stdout.write(f"{written:,} / {generations:,} generations ({time.monotonic() - started:.0f} s)")
        if connection.vendor == "postgresql":  # fresh planner statistics, as autovacuum would give them later
            with connection.cursor() as cursor:
                for table in ("activity_generation", "activity_usagehourly", "activity_usagedaily"):
                    cursor.execute(f"ANALYZE {table}")
        self.stdout.write(f"seeded {written:,} generations for {email} (account {account.id}) in {time.monotonic() - started:.0f} s")
