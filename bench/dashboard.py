"""Dashboard benchmark: p50/p95 of every dashboard page and GET /api/v1/activity for a large account.

    DATABASE_URL=postgres://... python bench/dashboard.py [--email bench@example.com] [--generations 1000000]

Seeds the account through ``manage.py seed_activity`` when it has fewer generations than asked, then
times each target ``--iterations`` times (after warm-up) through Django's test client in this process:
the full view, middleware, template and database time, without network. Prints one line per target
and a SUMMARY line with the worst p95 among the pages and the API (targets: < 300 ms, overview < 150 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openrouter_site.settings")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--email", default="bench@example.com")
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", default="", help="run only targets whose name contains this")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from accounts.models import ApiKey
    from accounts.services import account_get_or_create_personal, api_key_create, user_get_or_create
    from activity.models import Generation

    settings.ALLOWED_HOSTS = ["*"]
    user, _ = user_get_or_create(email=args.email)
    account = account_get_or_create_personal(user=user)
    have = Generation.objects.filter(account=account).count()
    if have < args.generations:
        print(f"seeding {args.generations - have:,} generations for {args.email} ...", flush=True)
        call_command("seed_activity", args.email, "--generations", str(args.generations - have), "--seed", str(have + 1))
        have = args.generations
    manager = ApiKey.objects.filter(account=account, is_management=True, name="bench-dashboard").first()
    with transaction.atomic():
        if manager is not None:
            manager.delete()
        manager, raw_manager = api_key_create(account=account, name="bench-dashboard", is_management=True)
    key = ApiKey.objects.filter(account=account, is_management=False).order_by("id").first()
    model = Generation.objects.filter(account=account).order_by("-created_at").values_list("model", flat=True).first()
    provider = Generation.objects.filter(account=account).order_by("-created_at").values_list("provider_name", flat=True).first()
    # A deep page of the log: the cursor of a row half a year back.
    import datetime as dt

    middle = (
        Generation.objects.filter(account=account, created_at__lt=dt.datetime.now(dt.UTC) - dt.timedelta(days=180))
        .order_by("-created_at", "-id").values("created_at", "id").first()
    )
    deep = f"{middle['created_at'].astimezone(dt.UTC).isoformat()}~{middle['id']}" if middle else ""
    gen_id = Generation.objects.filter(account=account).order_by("-created_at").values_list("id", flat=True).first()
    week_ago = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    month_ago = (dt.date.today() - dt.timedelta(days=40)).isoformat()
    month_end = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    from urllib.parse import quote

    targets: list[tuple[str, str, dict]] = [("overview /", "/", {})]
    for period in ("1h", "1d", "1mo", "1y"):
        for group in ("model", "key", "provider"):
            targets.append((f"activity {period} by {group}", f"/activity?period={period}&group={group}", {}))
    targets += [
        ("activity 1y filter model", f"/activity?period=1y&model={quote(model)}", {}),
        ("activity 1mo filter provider", f"/activity?period=1mo&group=key&provider={quote(provider)}", {}),
        ("activity 1d filter key", f"/activity?period=1d&key={key.hash}", {}),
        ("log filter status=error", "/activity?status=error", {}),
        ("log filter status=cancelled", "/activity?status=cancelled", {}),
        ("log filter date range", f"/activity?since={month_ago}&until={month_end}", {}),
        ("log filter model+key", f"/activity?model={quote(model)}&key={key.hash}", {}),
        ("log deep page", f"/activity?before={quote(deep)}", {}),
        ("log deep page filter model", f"/activity?model={quote(model)}&before={quote(deep)}", {}),
        ("log deep page status=error", f"/activity?status=error&before={quote(deep)}", {}),
        ("log poll (htmx partial)", "/activity/log", {}),
        ("csv export 1y by model", "/activity/export.csv?period=1y&group=model", {}),
        ("generation detail", f"/activity/generations/{gen_id}", {}),
        ("keys page", "/settings/keys", {}),
        ("credits page", "/settings/credits", {}),
        ("API GET /activity (30 days)", "/api/v1/activity", {"HTTP_AUTHORIZATION": f"Bearer {raw_manager}"}),
        ("API GET /activity?date=", f"/api/v1/activity?date={week_ago}", {"HTTP_AUTHORIZATION": f"Bearer {raw_manager}"}),
        ("API GET /activity?api_key_hash=", f"/api/v1/activity?api_key_hash={key.hash}",
         {"HTTP_AUTHORIZATION": f"Bearer {raw_manager}"}),
    ]
    client = Client()
    client.force_login(user)
    print(f"database: {connection.vendor}; account {account.id} ({args.email}) with {have:,} generations; "
          f"{args.iterations} timed runs per target after {args.warmup} warm-up", flush=True)
    print(f"{'target':<36} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst_page = worst_api = 0.0
    overview_p95 = 0.0
    failures = 0
    for name, url, headers in targets:
        if args.only and args.only not in name:
            continue
        timings = []
        for i in range(args.warmup + args.iterations):
            started = time.perf_counter()
            response = client.get(url, **headers)
            if response.streaming:
                b"".join(response.streaming_content)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                print(f"  {name}: HTTP {response.status_code}", flush=True)
                failures += 1
                break
            if i >= args.warmup:
                timings.append(elapsed)
        if not timings:
            continue
        p50, p95 = statistics.median(timings), percentile(timings, 0.95)
        print(f"{name:<36} {p50:8.1f} {p95:8.1f} {max(timings):8.1f}", flush=True)
        if name.startswith("API"):
            worst_api = max(worst_api, p95)
        else:
            worst_page = max(worst_page, p95)
        if name.startswith("overview"):
            overview_p95 = p95
    print(f"SUMMARY generations={have} overview_p95_ms={overview_p95:.1f} worst_page_p95_ms={worst_page:.1f} "
          f"worst_api_p95_ms={worst_api:.1f} failures={failures}")
    with transaction.atomic():
        ApiKey.objects.filter(id=manager.id).delete()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
