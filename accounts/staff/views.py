"""The staff console's pages. Each view parses, calls one service or selector, and renders.

Every page answers 404 to anyone without a staff role (``roles.staff_required``). Action forms
post here; a refusal (bad input, another role's action, a Stripe refusal) comes back as a message
on the page the form was on, never a 500.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import money
from billing import selectors as billing_selectors
from openrouter_site.errors import ApiError
from openrouter_site.inputs import int_text

from ..models import AuditEntry
from . import selectors, services
from .roles import LEAD, Actor, adjustment_limit, staff_required


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, role=request.staff_role, ip=request.META.get("REMOTE_ADDR") or None)


def _account_or_404(account_id: int):
    account = selectors.account_get(account_id=account_id)
    if account is None:
        raise Http404("No such account")
    return account


def _action(view):
    """A staff action's form post: staff only, POST only; errors become a message on the account page."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            message = view(request, *args, **kwargs)
        except ApiError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, message)
        account_id = kwargs.get("account_id")
        return redirect("staff:account", account_id=account_id) if account_id else redirect("staff:catalog")

    return staff_required(require_POST(wrapper))


# --- Pages ------------------------------------------------------------------------------------------


@staff_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    hits = selectors.account_search(query=query) if query else []
    if len(hits) == 1:
        return redirect("staff:account", account_id=hits[0].account.id)
    return render(request, "staff/search.html", {"query": query, "hits": hits, "searched": bool(query)})


@staff_required
@require_GET
def account_page(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _account_or_404(account_id)
    context = selectors.account_overview(account=account)
    context |= {
        "role": request.staff_role,
        "is_lead": request.staff_role == LEAD,
        "limit": adjustment_limit(request.staff_role),
    }
    return render(request, "staff/account.html", context)


@staff_required
@require_GET
def ledger_page(request: HttpRequest, account_id: int) -> HttpResponse:
    """Every ledger entry of an account, newest first (200 a page)."""
    account = _account_or_404(account_id)
    before = request.GET.get("before", "")
    entries = billing_selectors.ledger_entries(account_id=account.id, before_id=int_text(before))
    context = {
        "account": account,
        "totals": billing_selectors.account_totals(account_id=account.id),
        "ledger_sum": billing_selectors.ledger_sum(account_id=account.id),
        "drift": billing_selectors.ledger_drift(account_id=account.id),
        "entries": entries,
        "next_before": entries[-1].id if len(entries) == 200 else None,
    }
    return render(request, "staff/ledger.html", context)


@staff_required
@require_GET
def ledger_legacy(request: HttpRequest, account_id: int | None = None) -> HttpResponse:
    """The old ``/staff/ledger`` addresses lead into the console."""
    if account_id is not None:
        return redirect("staff:ledger", account_id=account_id)
    query = request.GET.get("q", "")
    return redirect(reverse("staff:search") + (f"?q={query}" if query else ""))


def _audit_filters(request: HttpRequest) -> tuple[selectors.AuditFilters, list[str]]:
    problems: list[str] = []

    def day(name: str) -> dt.date | None:
        value = request.GET.get(name, "").strip()
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            problems.append(f"{value!r} is not a date (YYYY-MM-DD); the filter was left out.")
            return None

    def text(name: str, limit: int) -> str:
        value = request.GET.get(name, "").strip()[:limit]
        if "\x00" in value:
            problems.append(f"The {name} filter contains a NUL character; it was left out.")
            return ""
        return value

    action = request.GET.get("action", "")
    if action and action not in AuditEntry.Action.values:
        problems.append(f"{action!r} is not an action; the filter was left out.")
        action = ""
    filters = selectors.AuditFilters(
        staff=text("staff", 200),
        account=text("account", 60),
        action=action,
        since=day("since"),
        until=day("until"),
    )
    return filters, problems


@staff_required
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    filters, problems = _audit_filters(request)
    if request.GET.get("format") == "csv":
        return _audit_csv(selectors.audit_entries(filters=filters, limit=None))
    before = request.GET.get("before", "")
    entries = selectors.audit_entries(filters=filters, before_id=int_text(before))
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "entries": entries,
        "filters": filters,
        "problems": problems,
        "actions": AuditEntry.Action.choices,
        "query": query.urlencode(),
        "next_before": entries[-1].id if len(entries) == 200 else None,
    }
    return render(request, "staff/audit.html", context)


def _audit_csv(entries: list[AuditEntry]) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "when (UTC)", "staff", "account", "action", "target", "amount (USD)", "before", "after",
                     "reason", "user-facing reason", "ticket", "ip"])
    for e in entries:
        writer.writerow([
            e.id, e.created_at.strftime("%Y-%m-%d %H:%M:%S"), _cell(e.staff_name), e.account.public_id if e.account else "",
            e.action, _cell(e.target), "" if e.amount is None else money.nanos_to_usd_string(e.amount),
            _cell(_figures(e.before)), _cell(_figures(e.after)), _cell(e.reason), _cell(e.user_reason), _cell(e.ticket),
            e.ip or "",
        ])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    return response


def _cell(text: str) -> str:
    """Text a spreadsheet would run as a formula (key names are the users' own) is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _figures(values: dict) -> str:
    """Balances in dollars (exact), other figures as they are."""
    parts = []
    for name, value in sorted(values.items()):
        if name == "balance" and isinstance(value, int):
            value = money.nanos_to_usd_string(value)
        parts.append(f"{name}={value}")
    return " ".join(parts)


@staff_required
@require_GET
def dead_letters_page(request: HttpRequest) -> HttpResponse:
    """Settlements that could not be written (never charged), newest first, across accounts."""
    return render(request, "staff/dead_letters.html", {"rows": selectors.dead_letters_recent()})


@staff_required
@require_GET
def catalog_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "staff/catalog.html",
        {"providers": selectors.catalog_for_outages(), "is_lead": request.staff_role == LEAD},
    )


# --- Actions ----------------------------------------------------------------------------------------


@_action
def adjust_credits(request: HttpRequest, account_id: int) -> str:
    account = _account_or_404(account_id)
    entry = services.account_credits_adjust(
        actor=_actor(request),
        account=account,
        direction=request.POST.get("direction", ""),
        amount=request.POST.get("amount", ""),
        reason=request.POST.get("reason", ""),
        user_reason=request.POST.get("user_reason", ""),
        ticket=request.POST.get("ticket", ""),
        confirm_negative=request.POST.get("confirm_negative") == "on",
        idempotency_key=request.POST.get("idempotency_key"),
    )
    verb = "Granted" if entry.amount > 0 else "Debited"
    return f"{verb} {money.nanos_to_display(abs(entry.amount))}; the balance is now {money.nanos_to_display(entry.after['balance'])}."


@_action
def refund_late(request: HttpRequest, account_id: int) -> str:
    account = _account_or_404(account_id)
    entry = services.purchase_refund_late(
        actor=_actor(request),
        account=account,
        purchase_id=request.POST.get("purchase_id", ""),
        reason=request.POST.get("reason", ""),
        ticket=request.POST.get("ticket", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return f"Refunded {money.nanos_to_display(-entry.amount)} to the card (the fee is not refunded)."


@_action
def key_disabled(request: HttpRequest, account_id: int, key_id: int) -> str:
    account = _account_or_404(account_id)
    api_key = selectors.api_key_of_account(account=account, key_id=key_id)
    if api_key is None:
        raise Http404("No such key")
    disabled = request.POST.get("disabled") == "1"
    services.api_key_disabled_set(
        actor=_actor(request),
        api_key=api_key,
        disabled=disabled,
        reason=request.POST.get("reason", ""),
        ticket=request.POST.get("ticket", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return f"Key {api_key.name!r} is {'disabled' if disabled else 'enabled'}, on every gateway process."


@_action
def auto_topup(request: HttpRequest, account_id: int) -> str:
    account = _account_or_404(account_id)
    enabled = request.POST.get("enabled") == "1"
    services.auto_topup_state_set(
        actor=_actor(request),
        account=account,
        enabled=enabled,
        reason=request.POST.get("reason", ""),
        ticket=request.POST.get("ticket", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return "Auto top-up resumed; its failure count is reset." if enabled else "Auto top-up paused."


@_action
def notice(request: HttpRequest, account_id: int) -> str:
    account = _account_or_404(account_id)
    kind = request.POST.get("kind", "")
    services.notice_resend(
        actor=_actor(request),
        account=account,
        kind=kind,
        purchase_id=request.POST.get("purchase_id"),
        reason=request.POST.get("reason", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return f"The {'receipt' if kind == 'receipt' else 'expiry notice'} is sent to {account.owner.email}."


@_action
def note(request: HttpRequest, account_id: int) -> str:
    account = _account_or_404(account_id)
    services.account_note_add(
        actor=_actor(request),
        account=account,
        note=request.POST.get("note", ""),
        ticket=request.POST.get("ticket", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return "Note added."


@_action
def outage(request: HttpRequest) -> str:
    down = request.POST.get("down") == "1"
    entry = services.outage_set(
        actor=_actor(request),
        kind=request.POST.get("kind", ""),
        object_id=request.POST.get("id", ""),
        down=down,
        reason=request.POST.get("reason", ""),
        ticket=request.POST.get("ticket", ""),
        idempotency_key=request.POST.get("idempotency_key"),
    )
    return f"{entry.target}: {'outage declared; routing skips it' if down else 'outage cleared; routing uses it again'}."
