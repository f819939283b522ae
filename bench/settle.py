"""The settlement writer's cost per batch: ``generations_settle`` on PostgreSQL + Redis, CPU and wall.

The writer thread shares the gateway process (and its GIL) with the event loop, so every
millisecond of CPU it spends on a batch is a millisecond no request is served. This times
``generations_settle`` for batches of 1, 8, 25 and 100 records (what 50, 400, 1,250 and 5,000
requests per second give at the writer's 20 ms interval), with the process's CPU time
(``time.process_time``) and the wall time, in a fresh database (``--database-url``, dropped and
re-created; default ``openrouter_bench_settle``) and Redis (``--redis-url``, keys under ``settle:``).

Run: ``.venv/bin/python bench/settle.py [--rounds 200] [--batches 1,8,25,100]``. Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PYTHON, ROOT, RUN_SECRETS, manage, reset_external_stores  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/openrouter_bench_settle"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
PREFIX = "settle"


def environment(opts: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    env.update({
        "DATABASE_URL": opts.database_url, "REDIS_URL": opts.redis_url, "COUNTER_PREFIX": PREFIX,
        "DJANGO_SETTINGS_MODULE": "openrouter_site.settings", "DEBUG": "0", **RUN_SECRETS,
    })
    return env


def measure(batches: list[int], rounds: int) -> None:
    """In the prepared environment: time generations_settle per batch size."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from accounts.models import ApiKey
    from activity.records import GenerationRecord
    from billing.services.ledger import generations_settle
    from routing.models import Endpoint

    key = ApiKey.objects.order_by("id").first()
    endpoint = Endpoint.objects.select_related("model").first()

    def record() -> GenerationRecord:
        return GenerationRecord(
            id=f"gen-{uuid.uuid4().hex}", account_id=key.account_id, api_key_id=key.id, key_hash=key.hash,
            key_window=None, created_at=dt.datetime.now(dt.UTC), held=1000, cost=700, cost_prompt=300,
            cost_completion=400, upstream_cost=700, api_type="completions", model=endpoint.model.slug,
            requested_model=endpoint.model.slug, provider_name="Simulated", provider_slug="simulated",
            endpoint_id=endpoint.id, upstream_id="chatcmpl-bench", tokens_prompt=12, tokens_completion=8,
            latency_ms=1, generation_time_ms=1, first_token_ms=1, finish_reason="stop", native_finish_reason="stop",
            provider_responses=[{"provider": "Simulated", "status": 200, "latency": 1}],
        )

    print(f"{'batch':>6} {'cpu/batch ms':>13} {'cpu/record us':>14} {'wall/batch ms':>14}")
    for size in batches:
        for _ in range(10):  # warm: prepared statements, connection, caches
            generations_settle(records=[record() for _ in range(size)])
        work = [[record() for _ in range(size)] for _ in range(rounds)]
        cpu, wall = time.process_time(), time.perf_counter()
        for batch in work:
            generations_settle(records=batch)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{size:>6} {1e3 * cpu / rounds:>13.2f} {1e6 * cpu / (rounds * size):>14.0f} {1e3 * wall / rounds:>14.2f}")
        print(f"SUMMARY_SETTLE batch={size} cpu_per_batch_ms={1e3 * cpu / rounds:.2f} "
              f"cpu_per_record_us={1e6 * cpu / (rounds * size):.0f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="batches timed per size")
    parser.add_argument("--batches", default="1,8,25,100", help="records per batch, comma-separated")
    parser.add_argument("--database-url", default=os.environ.get("SETTLE_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("SETTLE_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    opts = parser.parse_args()
    batches = [int(b) for b in opts.batches.split(",")]
    if opts.measure:
        measure(batches, opts.rounds)
        return 0
    env = environment(opts)
    reset_external_stores(env)
    manage(env, "migrate", "--noinput")
    manage(env, "load_catalog")
    manage(env, "create_api_key", "settle@example.com", "--credits", "1000000")
    child = [PYTHON, str(Path(__file__).resolve()), "--measure", "--rounds", str(opts.rounds), "--batches", opts.batches]
    return subprocess.run(child, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
