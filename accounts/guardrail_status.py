"""Per key and per member: each assigned guardrail budget's spend in its current window, when it
resets, and whether it is blocking requests (what an admin needs to see who is blocked and by what)."""

from __future__ import annotations

import datetime as dt

from billing.counters import BYOK_WINDOW_SUFFIX, budget_spent, counters, limit_window, window_reset_at

from . import guardrails as gr
from .models import Account


def guardrail_status_rows(*, account: Account, now: dt.datetime | None = None) -> list[dict]:
    """One row per assignment: {guardrail, kind ("key"|"member"), who, spent, held, limit, resets_at, blocked}."""
    now = now or dt.datetime.now(dt.UTC)
    rows: list[dict] = []
    keys, _ = gr.guardrail_key_assignments(account=account, limit=10_000)
    members, _ = gr.guardrail_member_assignments(account=account, limit=10_000)
    subjects = [("key", a.guardrail, a.api_key.name, f"k:{a.api_key.hash}") for a in keys if not a.api_key.disabled]
    guardrails = {g.id: g for g in gr.guardrail_list(account=account, limit=10_000)[0]}
    subjects += [
        ("member", guardrails[a.guardrail_id], a.user.email, f"m:{account.id}:{a.user_id}")
        for a in members
        if a.guardrail_id in guardrails
    ]
    store = counters()
    for kind, guardrail, who, subject in subjects:
        row = {"guardrail": guardrail, "kind": kind, "who": who, "limit": guardrail.limit, "spent": None,
               "held": 0, "resets_at": None, "blocked": False, "remaining": None}
        if guardrail.limit is not None:
            window = limit_window(guardrail.reset_interval, now) + (
                BYOK_WINDOW_SUFFIX if guardrail.include_byok_in_budgets else ""
            )
            spent = budget_spent(subject, window)
            try:
                held = store.budget_snapshot(subject, window)["held"] or 0
                refused_at = store.budget_refused(subject, window)
            except Exception:  # Redis unreachable: the page still shows the database's figures
                held, refused_at = 0, None
            remaining = guardrail.limit - spent - held
            row.update(
                spent=spent, held=held, remaining=remaining, resets_at=window_reset_at(guardrail.reset_interval, now),
                blocked=remaining <= 0 or refused_at == guardrail.limit,
            )
        rows.append(row)
    rows.sort(key=lambda r: (not r["blocked"], r["guardrail"].name, r["kind"], r["who"]))
    return rows
