"""The credits pages (/settings/credits ...) and their small JSON endpoints (the support views are in accounts/staff/).

Each view parses, calls one service or selector, and renders. Billing errors carry their
own message: JSON endpoints answer them in the OpenRouter envelope, form posts show them
as a message on the page they return to.
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.context import dashboard_account
from accounts.models import Account
from accounts.services import account_settings_update
from activity.selectors import usage_daily_rows
from openrouter_site.errors import ApiError, NotFound, error_response

from . import fees, money, selectors, services, stripe_client
from .crypto import SimulatedCryptoProcessor, crypto_enabled, crypto_processor
from .models import Purchase

logger = logging.getLogger("openrouter.billing")


def _account(request: HttpRequest) -> Account:
    """The dashboard's account; in an organization only its admins see and move its money."""
    return dashboard_account(request, admin=True)


def _json_errors(view):
    """Billing errors (and 404s) leave a JSON endpoint in the OpenRouter envelope."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return error_response(exc)

    return wrapper


def _form_errors(view):
    """Billing errors of a form post become a message on the credits page."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            messages.error(request, exc.message)
            return redirect("billing:credits")

    return wrapper


# --- Pages ------------------------------------------------------------------------------------------


@login_required
@require_GET
def credits_page(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    now = timezone.now()
    rows = selectors.purchase_rows(account=account, now=now)
    low, high = fees.purchase_limits_cents()
    context = {
        "account": account,
        "totals": selectors.account_totals(account_id=account.id),
        "profile": selectors.billing_profile_for(account=account),
        "pending": [row for row in rows if row.purchase.status == Purchase.Status.PENDING],
        "history": [row for row in rows if row.purchase.status != Purchase.Status.PENDING],
        "lots": selectors.lots_active(account=account),
        "expiring": selectors.lots_expiring(account=account, now=now),
        "history_rows": _history_rows(account.id),
        "quote": fees.default_quote().as_dict(),
        "min_purchase": money.cents_to_display(low),
        "max_purchase": money.cents_to_display(high),
        "stripe_js_url": stripe_client.js_url(),
        "crypto_enabled": crypto_enabled(),
        "stripe_publishable_key": stripe_client.publishable_key(),
        "expiry_notice_days": settings.BILLING_EXPIRY_NOTICE_DAYS,
        "max_failures": settings.BILLING_AUTO_TOPUP_MAX_FAILURES,
    }
    return render(request, "billing/credits.html", context)


def _history_rows(account_id: int) -> list[dict]:
    """Credits in and out (ledger entries other than usage) beside one usage row per UTC day, newest first."""
    rows = [
        {"at": e.created_at, "what": e.get_kind_display() + (f" · {e.memo}" if e.memo else ""), "amount": e.amount,
         "balance_after": e.balance_after, "usage": False}
        for e in selectors.ledger_movements(account_id=account_id)
    ]
    for day in usage_daily_rows(account_id=account_id):
        if day["cost"]:
            rows.append({"at": day["bucket"], "what": f"Usage · {day['requests']} request{'s' if day['requests'] != 1 else ''}",
                         "amount": -day["cost"], "balance_after": None, "usage": True})
    rows.sort(key=lambda r: r["at"], reverse=True)
    return rows[:100]


@login_required
@require_GET
def receipt_page(request: HttpRequest, purchase_id: int) -> HttpResponse:
    receipt = selectors.purchase_receipt(account=_account(request), purchase_id=purchase_id)
    if receipt is None:
        raise Http404("No such purchase")
    return render(request, "billing/receipt.html", receipt)


# --- Form posts -------------------------------------------------------------------------------------


@login_required
@require_POST
@_form_errors
def refund_create(request: HttpRequest, purchase_id: int) -> HttpResponse:
    refund = services.purchase_refund(account=_account(request), purchase_id=purchase_id)
    messages.success(
        request, f"Refunded ${money.cents_to_usd_string(refund.amount_cents)} to your card (the fee is not refunded)."
    )
    return redirect("billing:credits")


@login_required
@require_POST
@_form_errors
def auto_topup_update(request: HttpRequest) -> HttpResponse:
    services.auto_topup_configure(
        account=_account(request),
        enabled=request.POST.get("enabled") == "on",
        threshold=request.POST.get("threshold", ""),
        amount=request.POST.get("amount", ""),
    )
    messages.success(request, "Auto top-up settings saved.")
    return redirect("billing:credits")


@login_required
@require_POST
@_form_errors
def privacy_update(request: HttpRequest) -> HttpResponse:
    allowed = request.POST.get("allow_training_discount") == "on"
    account_settings_update(account=_account(request), allow_training_discount=allowed)
    messages.success(request, "The 1% discount is on." if allowed else "The 1% discount is off.")
    return redirect("billing:credits")


@login_required
@require_POST
@_form_errors
def crypto_purchase_create(request: HttpRequest) -> HttpResponse:
    purchase = services.crypto_purchase_start(account=_account(request), amount=request.POST.get("amount", ""))
    return redirect(purchase.crypto_hosted_url)


# --- JSON endpoints used by the page's script ----------------------------------------------------------


@login_required
@require_GET
@_json_errors
def quote(request: HttpRequest) -> HttpResponse:
    method = request.GET.get("method", "card")
    if method not in Purchase.Method.values:
        method = "card"
    return JsonResponse(fees.purchase_quote(method=method, amount=request.GET.get("amount", "")).as_dict())


@login_required
@require_POST
@_json_errors
def card_setup_create(request: HttpRequest) -> HttpResponse:
    intent = services.card_setup_start(account=_account(request))
    return JsonResponse({"client_secret": intent.client_secret, "setup_intent_id": intent.id})


@login_required
@require_POST
@_json_errors
def card_setup_confirm(request: HttpRequest) -> HttpResponse:
    profile = services.card_setup_complete(account=_account(request), setup_intent_id=request.POST.get("setup_intent_id"))
    return JsonResponse({"brand": profile.card_brand, "last4": profile.card_last4})


@login_required
@require_POST
@_json_errors
def card_purchase_create(request: HttpRequest) -> HttpResponse:
    payment = services.card_purchase_start(account=_account(request), amount=request.POST.get("amount", ""))
    return JsonResponse(_purchase_json(payment.purchase) | {"client_secret": payment.client_secret}, status=201)


@login_required
@require_GET
@_json_errors
def purchase_status(request: HttpRequest, purchase_id: int) -> HttpResponse:
    purchase = selectors.purchase_for_account(account=_account(request), purchase_id=purchase_id)
    if purchase is None:
        raise NotFound("No such purchase")
    return JsonResponse(_purchase_json(purchase))


def _purchase_json(purchase: Purchase) -> dict:
    return {
        "id": purchase.id,
        "status": purchase.status,
        "method": purchase.method,
        "credits": money.cents_to_usd_string(money.nanos_to_cents_floor(purchase.credits)),
        "fee": money.cents_to_usd_string(money.nanos_to_cents_floor(purchase.fee)),
        "total": money.cents_to_usd_string(purchase.total_cents),
        "failure_reason": purchase.failure_reason,
        "receipt_url": reverse("billing:receipt", args=[purchase.id]),
    }


# --- The simulated crypto processor's hosted page (development and tests) -------------------------------


@require_http_methods(["GET", "POST"])
def crypto_simulated_page(request: HttpRequest, charge_id: str) -> HttpResponse:
    processor = crypto_processor() if crypto_enabled() else None
    if not isinstance(processor, SimulatedCryptoProcessor):
        raise Http404("No simulated crypto processor here")
    charge = processor.charge(charge_id)
    if charge is None:
        raise Http404("Unknown or expired charge")
    if request.method == "POST" and charge["status"] == "pending":
        processor.pay(
            charge_id,
            webhook_url=request.build_absolute_uri(reverse("billing:webhook-crypto")),
            succeed=request.POST.get("outcome") != "fail",
        )
        messages.info(request, "Payment sent; your credits appear as soon as the processor confirms it.")
        return redirect("billing:credits")
    context = {"charge_id": charge_id, "charge": charge, "total": money.cents_to_usd_string(charge["amount_cents"])}
    return render(request, "billing/crypto_simulated.html", context)
