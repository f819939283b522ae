"""Organization and guardrail pages: the context switcher, members and invitations, credit moves,
guardrails with their assignments and who is blocked. Each view parses, calls a service, renders;
a refused action is a message on the page (400) and changes nothing."""

from __future__ import annotations

import secrets
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from billing.money import MoneyError, nanos_to_price_string, usd_input_to_nanos
from billing.services import TransferError, credits_transfer

from . import guardrails as gr
from . import organizations as orgs
from .context import dashboard_context, dashboard_switch
from .guardrail_status import guardrail_status_rows
from .models import ApiKey, Membership

MAX_LIMIT_USD = 1_000_000


class FormError(Exception):
    pass


def _has_nul(post) -> bool:
    """PostgreSQL cannot store NUL characters: refuse them up front (a message, not a 500)."""
    return any("\x00" in value for _name, values in post.lists() for value in values)


# --- context -------------------------------------------------------------------------------------


@login_required
@require_POST
def context_switch(request: HttpRequest) -> HttpResponse:
    account = dashboard_switch(request, public_id=request.POST.get("account", "personal")[:64])
    messages.success(request, f"Now working in {account.name or 'your personal account'}.")
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or reverse("home")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("home")
    return redirect(target)


# --- organization page ---------------------------------------------------------------------------


def _member_of(organization, public_id: str):
    users, _unknown = gr.account_member_users_by_public_id(account=organization, public_ids=[public_id[:64]])
    if not users:
        raise FormError("That user is not a member of this organization.")
    return next(iter(users.values()))


def _organization_context(request: HttpRequest, **extra) -> dict:
    dash = dashboard_context(request)
    context = {"dash": dash, "transfer_token": secrets.token_hex(16), **extra}  # a resubmitted form moves once
    if dash.is_organization:
        members = orgs.organization_members(organization=dash.account)
        public = gr.user_public_ids(user_ids=[m.user_id for m in members])
        key_counts: dict[int, int] = {}
        for creator_id in ApiKey.objects.filter(account=dash.account, is_management=False, disabled=False).values_list(
            "creator_id", flat=True
        ):
            key_counts[creator_id] = key_counts.get(creator_id, 0) + 1
        context["members"] = [
            {"m": m, "public_id": public.get(m.user_id, ""), "keys": key_counts.get(m.user_id, 0)} for m in members
        ]
        context["invites"] = orgs.organization_invites_pending(organization=dash.account) if dash.is_admin else []
        context["personal_balance"] = dash.personal.balance
    return context


@login_required
@require_http_methods(["GET", "POST"])
def organization_page(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "accounts/organization.html", _organization_context(request))
    dash = dashboard_context(request)
    action = request.POST.get("action", "")
    try:
        if _has_nul(request.POST):
            raise FormError("The form contains a NUL character.")
        message = _organization_action(request, dash, action)
    except (FormError, orgs.OrganizationError, TransferError) as exc:
        messages.error(request, str(exc) if not isinstance(exc, TransferError) else exc.message)
        return render(request, "accounts/organization.html", _organization_context(request, form=request.POST), status=400)
    if message:
        messages.success(request, message)
    return redirect("orgs:organization")


def _organization_action(request: HttpRequest, dash, action: str) -> str:
    if action == "create":
        organization = orgs.organization_create(owner=request.user, name=request.POST.get("name", ""))
        dashboard_switch(request, public_id=organization.public_id)
        return f"Created {organization.name}; you are its admin and now work in it."
    if not dash.is_organization:
        raise FormError("Switch to an organization first.")
    organization = dash.account
    if action == "leave":
        orgs.organization_member_remove(organization=organization, user=request.user)
        dashboard_switch(request, public_id="personal")
        return f"You left {organization.name}; your keys there are disabled."
    if action == "transfer":
        try:
            amount = usd_input_to_nanos(request.POST.get("amount", "").strip())
        except (MoneyError, ValueError, ArithmeticError):
            raise FormError("The amount must be in USD, like 5 or 2.50.") from None
        if amount <= 0 or amount > MAX_LIMIT_USD * 10**9:
            raise FormError("The amount must be positive (and at most $1,000,000).")
        token = request.POST.get("token", "")[:64] or secrets.token_hex(16)
        credits_transfer(
            source=dash.personal, target=organization, amount=amount,
            idempotency_key=f"{request.user.id}:{organization.id}:{token}",
        )
        return f"Moved ${request.POST.get('amount').strip()} from your personal account to {organization.name}."
    if not dash.is_admin:
        raise PermissionDenied("Only organization admins manage members.")
    if action == "invite":
        _invite, _token = orgs.organization_invite_create(
            organization=organization, email=request.POST.get("email", ""), invited_by=request.user,
            role=request.POST.get("role", Membership.Role.MEMBER),
            accept_url=lambda token: request.build_absolute_uri(reverse("orgs:invite", args=[token])),
        )
        return f"Invitation sent to {request.POST.get('email', '').strip().lower()}."
    if action == "remove":
        user = _member_of(organization, request.POST.get("user_id", ""))
        disabled = orgs.organization_member_remove(organization=organization, user=user)
        return f"Removed {user.email}; {disabled} of their keys {'is' if disabled == 1 else 'are'} disabled."
    if action == "role":
        user = _member_of(organization, request.POST.get("user_id", ""))
        orgs.organization_role_set(organization=organization, user=user, role=request.POST.get("role", ""))
        return f"{user.email} is now {request.POST.get('role')}."
    if action == "revoke":
        try:
            invite_id = int(request.POST.get("invite_id", ""))
        except ValueError:
            raise FormError("Unknown invitation.") from None
        invite = next((i for i in orgs.organization_invites_pending(organization=organization) if i.id == invite_id), None)
        if invite is None:
            raise FormError("Unknown invitation.")
        orgs.organization_invite_revoke(invite=invite)
        return f"Invitation to {invite.email} revoked."
    raise FormError("Unknown action.")


@login_required
@require_http_methods(["GET", "POST"])
def invite_page(request: HttpRequest, token: str) -> HttpResponse:
    invite = orgs.invite_get_by_token(token=token[:100])
    if request.method == "GET":
        return render(request, "accounts/invite.html", {"invite": invite})
    try:
        membership = orgs.organization_invite_accept(token=token[:100], user=request.user)
    except orgs.OrganizationError as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/invite.html", {"invite": invite}, status=400)
    dashboard_switch(request, public_id=membership.account.public_id)
    messages.success(request, f"You joined {membership.account.name} as {membership.role}.")
    return redirect("dash-accounts:keys")


# --- guardrails pages ----------------------------------------------------------------------------


def _admin_account(request: HttpRequest):
    dash = dashboard_context(request)
    if not dash.is_admin:
        raise PermissionDenied("Only organization admins manage guardrails.")
    return dash.account


def _guardrail_of(account, guardrail_id: str):
    try:
        parsed = uuid.UUID(guardrail_id)
    except ValueError:
        raise Http404("No such guardrail") from None
    guardrail = gr.guardrail_get(account=account, guardrail_id=parsed)
    if guardrail is None:
        raise Http404("No such guardrail")
    return guardrail


def _list(post, name: str) -> list[str] | None:
    raw = post.get(name, "")
    items = [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
    if len(items) > 100 or any(len(i) > 200 for i in items):
        raise FormError(f"{name.replace('_', ' ').capitalize()}: at most 100 items of 200 characters.")
    return items or None


def _guardrail_fields(post) -> dict:
    name = post.get("name", "").strip()
    if not name or len(name) > 200:
        raise FormError("Give the guardrail a name (at most 200 characters).")
    description = post.get("description", "").strip()
    if len(description) > 1000:
        raise FormError("The description must be at most 1000 characters.")
    raw_limit = post.get("limit", "").strip()
    limit = None
    if raw_limit:
        try:
            limit = usd_input_to_nanos(raw_limit)
        except (MoneyError, ValueError, ArithmeticError):
            raise FormError("The budget must be an amount in USD, like 10 or 0.01.") from None
        if limit < 0 or limit > MAX_LIMIT_USD * 10**9:
            raise FormError("The budget must be between $0 and $1,000,000.")
    interval = post.get("reset_interval", "")
    if interval not in ("", "daily", "weekly", "monthly"):
        raise FormError("The budget resets daily, weekly, monthly or never.")
    fields = {
        "name": name, "description": description or None, "limit": limit, "reset_interval": interval or None,
        "include_byok_in_budgets": post.get("include_byok_in_budgets") == "on",
    }
    for field in ("allowed_models", "ignored_models", "allowed_providers", "ignored_providers"):
        fields[field] = _list(post, field)
    for field in ("allowed_providers", "ignored_providers"):
        if fields[field]:
            fields[field] = [p.lower() for p in fields[field]]
            unknown = gr.catalog_unknown(providers=fields[field])
            if unknown:
                raise FormError(f"Unknown provider: {unknown[0][:64]}")
    for field in ("allowed_models", "ignored_models"):
        if fields[field]:
            unknown = gr.catalog_unknown(models=fields[field])
            if unknown:
                raise FormError(f"Unknown model: {unknown[0][:64]}")
    for group in ("anthropic", "openai", "google", "xai", "other"):
        fields[f"enforce_zdr_{group}"] = post.get(f"enforce_zdr_{group}") == "on"
    for flag in ("enable_paid_model_training", "enable_free_model_training"):
        fields[flag] = False if post.get(f"deny_{flag}") == "on" else None
    return fields


@login_required
@require_http_methods(["GET", "POST"])
def guardrails_page(request: HttpRequest) -> HttpResponse:
    account = _admin_account(request)
    context = {"guardrails": gr.guardrail_list(account=account, limit=100)[0], "status": guardrail_status_rows(account=account)}
    if request.method == "GET":
        return render(request, "accounts/guardrails.html", context)
    try:
        if _has_nul(request.POST):
            raise FormError("The form contains a NUL character.")
        fields = _guardrail_fields(request.POST)
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/guardrails.html", {**context, "form": request.POST}, status=400)
    guardrail = gr.guardrail_create(account=account, **fields)
    messages.success(request, f"Created {guardrail.name}. It applies to nothing until you assign it.")
    return redirect("orgs:guardrail", guardrail_id=guardrail.id)


def _guardrail_context(account, guardrail) -> dict:
    keys = list(ApiKey.objects.select_related("creator").filter(account=account, is_management=False).order_by("name", "id"))
    key_assigned = {a.api_key_id: a.guardrail_id for a in gr.guardrail_key_assignments(account=account, limit=10_000)[0]}
    members = list(gr.account_members(account=account))
    public = gr.user_public_ids(user_ids=[m.user_id for m in members])
    member_assigned = {a.user_id: a.guardrail_id for a in gr.guardrail_member_assignments(account=account, limit=10_000)[0]}
    return {
        "guardrail": guardrail,
        "guardrail_limit": nanos_to_price_string(guardrail.limit) if guardrail.limit is not None else "",
        "keys": [{"k": k, "here": key_assigned.get(k.id) == guardrail.id, "elsewhere": k.id in key_assigned and key_assigned[k.id] != guardrail.id} for k in keys],
        "members": [{"m": m, "public_id": public.get(m.user_id, ""), "here": member_assigned.get(m.user_id) == guardrail.id} for m in members],
        "status": [row for row in guardrail_status_rows(account=account) if row["guardrail"].id == guardrail.id],
    }


@login_required
@require_http_methods(["GET", "POST"])
def guardrail_page(request: HttpRequest, guardrail_id: str) -> HttpResponse:
    account = _admin_account(request)
    guardrail = _guardrail_of(account, guardrail_id)
    if request.method == "GET":
        return render(request, "accounts/guardrail.html", _guardrail_context(account, guardrail))
    action = request.POST.get("action", "save")
    try:
        if _has_nul(request.POST):
            raise FormError("The form contains a NUL character.")
        if action == "save":
            gr.guardrail_update(guardrail=guardrail, **_guardrail_fields(request.POST))
            message = f"Saved {guardrail.name}."
        elif action == "assign":
            hashes = request.POST.getlist("key_hashes")[:500]
            keys, unknown = gr.account_keys_by_hash(account=account, hashes=[h[:64] for h in hashes])
            if unknown:
                raise FormError("Choose keys of this account.")
            ids = request.POST.getlist("member_user_ids")[:500]
            users, unknown = gr.account_member_users_by_public_id(account=account, public_ids=[i[:64] for i in ids])
            if unknown:
                raise FormError("Choose members of this account.")
            with transaction.atomic():
                assigned = {k.hash for k in keys}
                current = {a.api_key.hash for a in gr.guardrail_key_assignments(account=account, guardrail=guardrail, limit=10_000)[0]}
                gr.guardrail_keys_unassign(guardrail=guardrail, key_hashes=list(current - assigned))
                gr.guardrail_keys_assign(guardrail=guardrail, keys=[k for k in keys if k.hash not in current], assigned_by=dashboard_context(request).personal.public_id)
                current_members = {a.user_id: a.user for a in gr.guardrail_member_assignments(account=account, guardrail=guardrail, limit=10_000)[0]}
                chosen = {u.id: u for u in users.values()}
                gr.guardrail_members_unassign(guardrail=guardrail, users=[u for i, u in current_members.items() if i not in chosen])
                gr.guardrail_members_assign(guardrail=guardrail, users=[u for i, u in chosen.items() if i not in current_members], assigned_by=dashboard_context(request).personal.public_id)
            message = f"Assigned {guardrail.name} to {len(keys)} key(s) and {len(users)} member(s)."
        elif action == "delete":
            gr.guardrail_delete(guardrail=guardrail)
            messages.success(request, f"Deleted {guardrail.name}.")
            return redirect("orgs:guardrails")
        else:
            raise FormError("Unknown action.")
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/guardrail.html", _guardrail_context(account, guardrail), status=400)
    messages.success(request, message)
    return redirect("orgs:guardrail", guardrail_id=guardrail.id)
