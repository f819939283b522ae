"""Settings pages: API keys, privacy, BYOK provider keys and the account itself.

Each view parses the form, calls one service, and renders. A bad field re-renders the page with
its message (status 400) and saves nothing; another account's key is a 404.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from activity.selectors import KeyUsage, key_usage_by_key
from billing.money import MoneyError, usd_input_to_nanos
from billing.services import account_delete as billing_account_delete

from . import selectors, services
from .context import dashboard_account, dashboard_context, dashboard_key_creator
from .models import Account, ApiKey, ProviderKey

MAX_LIMIT_USD = 1_000_000
MAX_NAME = 200
MAX_SECRET = 16_384
LIMIT_RESETS = ("", "daily", "weekly", "monthly")


class FormError(Exception):
    """A field the page cannot accept; shown as a message, nothing saved."""


def _account(request: HttpRequest, *, admin: bool = False) -> Account:
    return dashboard_account(request, admin=admin)


def _personal(request: HttpRequest) -> Account:
    return dashboard_context(request).personal


def _no_nul(post) -> None:
    """PostgreSQL cannot store NUL characters: refuse them up front (a message, not a 500)."""
    if any("\x00" in value for values in post.lists() for value in values[1] if isinstance(value, str)):
        raise FormError("The form contains a NUL character.")


def _key_of(account: Account, key_hash: str, creator=None) -> ApiKey:
    """The account's key; a member of an organization (``creator``) reaches only their own."""
    if "\x00" in key_hash:
        raise Http404("No such API key")
    keys = ApiKey.objects.filter(hash=key_hash.lower()[:64], account=account)
    if creator is not None:
        keys = keys.filter(creator=creator)
    api_key = keys.first()
    if api_key is None:
        raise Http404("No such API key")
    return api_key


# --- parsing -------------------------------------------------------------------------------------


def _name(post) -> str:
    _no_nul(post)
    name = post.get("name", "").strip()
    if not name:
        raise FormError("Give the key a name.")
    if len(name) > MAX_NAME:
        raise FormError(f"The name must be at most {MAX_NAME} characters.")
    return name


def _limit(post) -> int | None:
    raw = post.get("limit", "").strip()
    if not raw:
        return None
    try:
        limit = usd_input_to_nanos(raw)
    except (MoneyError, ValueError, ArithmeticError):
        raise FormError("The credit limit must be an amount in USD, like 10 or 2.50.") from None
    if limit < 0:
        raise FormError("The credit limit must not be negative.")
    if limit > MAX_LIMIT_USD * 10**9:
        raise FormError(f"The credit limit must be at most ${MAX_LIMIT_USD:,}.")
    return limit


def _limit_reset(post) -> str | None:
    value = post.get("limit_reset", "")
    if value not in LIMIT_RESETS:
        raise FormError("The limit reset must be daily, weekly, monthly or never.")
    return value or None


def _expires_at(post) -> dt.datetime | None:
    raw = post.get("expires_at", "").strip()
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw) if "T" in raw else dt.datetime.combine(dt.date.fromisoformat(raw), dt.time())
    except ValueError:
        raise FormError("The expiry must be a date (YYYY-MM-DD) or a date and time, in UTC.") from None
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if value <= dt.datetime.now(dt.UTC):
        raise FormError("The expiry must be in the future.")
    if value.year > 2100:
        raise FormError("The expiry is too far in the future.")
    return value


def _key_fields(post) -> dict:
    limit = _limit(post)
    limit_reset = _limit_reset(post)
    if limit_reset and limit is None:
        raise FormError("A limit reset needs a credit limit.")
    return {
        "limit": limit,
        "limit_reset": limit_reset,
        "include_byok_in_limit": post.get("include_byok_in_limit") == "on",
        "expires_at": _expires_at(post),
    }


# --- API keys ------------------------------------------------------------------------------------


def _keys_context(account: Account, creator=None, **extra) -> dict:
    keys = ApiKey.objects.select_related("creator", "oauth_code__app").filter(account=account).order_by("-created_at", "-id")
    if creator is not None:  # a member of an organization sees their own keys
        keys = keys.filter(creator=creator)
    keys = list(keys)
    usage = key_usage_by_key(key_ids=[k.id for k in keys])
    rows = [{"key": k, "usage": usage.get(k.id, KeyUsage())} for k in keys]
    return {
        "inference_keys": [r for r in rows if not r["key"].is_management],
        "management_keys": [r for r in rows if r["key"].is_management],
        "now": dt.datetime.now(dt.UTC),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def keys_page(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    creator = dashboard_key_creator(request)
    if request.method == "GET":
        return render(request, "accounts/keys.html", _keys_context(account, creator))
    management = request.POST.get("kind") == "management"
    if management and creator is not None:
        raise PermissionDenied("Only organization admins can create management keys.")
    try:
        name = _name(request.POST)
        fields = {} if management else _key_fields(request.POST)
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/keys.html", _keys_context(account, creator, form=request.POST), status=400)
    with transaction.atomic():
        api_key, raw = services.api_key_create(
            account=account, name=name, creator=request.user, is_management=management, **fields
        )
    return render(request, "accounts/keys.html", _keys_context(account, creator, new_key=api_key, new_raw=raw))


@login_required
@require_http_methods(["GET", "POST"])
def key_edit(request: HttpRequest, key_hash: str) -> HttpResponse:
    account = _account(request)
    api_key = _key_of(account, key_hash, dashboard_key_creator(request))
    if request.method == "POST":
        try:
            changes = {"name": _name(request.POST)}
            if not api_key.is_management:
                changes |= _key_fields(request.POST)
        except FormError as exc:
            messages.error(request, str(exc))
            return render(request, "accounts/key_edit.html", {"api_key": api_key, "form": request.POST}, status=400)
        with transaction.atomic():
            services.api_key_update(api_key=api_key, **changes)
        messages.success(request, f"Saved {api_key.name}.")
        return redirect("dash-accounts:keys")
    return render(request, "accounts/key_edit.html", {"api_key": api_key})


@login_required
@require_POST
def key_toggle(request: HttpRequest, key_hash: str) -> HttpResponse:
    api_key = _key_of(_account(request), key_hash, dashboard_key_creator(request))
    with transaction.atomic():
        services.api_key_update(api_key=api_key, disabled=not api_key.disabled)
    messages.success(request, f"{api_key.name} is {'disabled' if api_key.disabled else 'enabled'}.")
    return redirect("dash-accounts:keys")


@login_required
@require_http_methods(["GET", "POST"])
def key_delete(request: HttpRequest, key_hash: str) -> HttpResponse:
    api_key = _key_of(_account(request), key_hash, dashboard_key_creator(request))
    if request.method == "GET":
        return render(request, "accounts/key_delete.html", {"api_key": api_key})
    with transaction.atomic():
        services.api_key_delete(api_key=api_key)
    messages.success(request, f"Deleted {api_key.name}; requests with it are refused from now on.")
    return redirect("dash-accounts:keys")


# --- Privacy -------------------------------------------------------------------------------------


def _provider_slugs() -> list[tuple[str, str]]:
    from routing.selectors import provider_list

    return [(p.slug, p.name) for p in provider_list()]


@login_required
@require_http_methods(["GET", "POST"])
def privacy_page(request: HttpRequest) -> HttpResponse:
    account = _account(request, admin=request.method == "POST")  # members see the settings, admins change them
    providers = _provider_slugs()
    context = {"account": account, "providers": providers}
    if request.method == "GET":
        return render(request, "accounts/privacy.html", context)
    known = {slug for slug, _ in providers}
    allowed = request.POST.getlist("allowed_providers")
    ignored = request.POST.getlist("ignored_providers")
    error = None
    if len(allowed) > 200 or len(ignored) > 200 or not set(allowed + ignored) <= known:
        error = "Choose providers from the list."
    elif set(allowed) & set(ignored):
        error = "A provider cannot be both allowed and ignored."
    if error:
        messages.error(request, error)
        return render(request, "accounts/privacy.html", context, status=400)
    with transaction.atomic():
        services.account_privacy_update(
            account=account,
            allow_training_paid=request.POST.get("allow_training_paid") == "on",
            allow_training_free=request.POST.get("allow_training_free") == "on",
            zdr_only=request.POST.get("zdr_only") == "on",
            allowed_providers=allowed,
            ignored_providers=ignored,
            allow_training_discount=request.POST.get("allow_training_discount") == "on",
        )
    messages.success(request, "Privacy settings saved; they apply to every request of this account.")
    return redirect("dash-accounts:privacy")


# --- BYOK ----------------------------------------------------------------------------------------


def _provider_key_of(account: Account, key_id: str) -> ProviderKey:
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise Http404("No such provider key") from None
    provider_key = selectors.provider_key_get(account=account, key_id=parsed)
    if provider_key is None:
        raise Http404("No such provider key")
    return provider_key


@login_required
@require_http_methods(["GET", "POST"])
def byok_page(request: HttpRequest) -> HttpResponse:
    account = _account(request, admin=True)
    keys, _total = selectors.provider_key_list(account=account, limit=500)
    context = {"keys": keys, "providers": _provider_slugs()}
    if request.method == "GET":
        return render(request, "accounts/byok.html", context)
    try:
        _no_nul(request.POST)
        provider = selectors.byok_provider_get(slug=request.POST.get("provider", "")[:64])
        if provider is None:
            raise FormError("Choose a provider.")
        secret = request.POST.get("key", "").strip()
        if not secret:
            raise FormError("Paste the provider's API key.")
        if len(secret) > MAX_SECRET:
            raise FormError("That key is too long.")
        name = request.POST.get("name", "").strip()
        if len(name) > 255:
            raise FormError("The name must be at most 255 characters.")
        mode = request.POST.get("mode", "prioritized")
        if mode not in ("prioritized", "fallback", "always"):
            raise FormError("Choose how the key is used.")
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/byok.html", context, status=400)
    services.provider_key_create(
        account=account, provider=provider, key=secret, name=name or None,
        is_fallback=mode == "fallback", always_use=mode == "always",
    )
    messages.success(request, f"Added a {provider.name} key.")
    return redirect("dash-accounts:byok")


BYOK_ACTIONS = {
    "enable": {"disabled": False},
    "disable": {"disabled": True},
    "always": {"always_use": True, "is_fallback": False},
    "prioritize": {"always_use": False, "is_fallback": False},
    "fallback": {"always_use": False, "is_fallback": True},
}


@login_required
@require_POST
def byok_update(request: HttpRequest, key_id: str) -> HttpResponse:
    provider_key = _provider_key_of(_account(request, admin=True), key_id)
    action = request.POST.get("action", "")
    if action in ("up", "down"):
        services.provider_key_move(provider_key=provider_key, up=action == "up")
    elif action in BYOK_ACTIONS:
        services.provider_key_update(provider_key=provider_key, **BYOK_ACTIONS[action])
    else:
        messages.error(request, "Unknown action.")
        return redirect("dash-accounts:byok")
    messages.success(request, "Provider key updated.")
    return redirect("dash-accounts:byok")


@login_required
@require_POST
def byok_delete(request: HttpRequest, key_id: str) -> HttpResponse:
    services.provider_key_delete(provider_key=_provider_key_of(_account(request, admin=True), key_id))
    messages.success(request, "Provider key deleted.")
    return redirect("dash-accounts:byok")


# --- Account -------------------------------------------------------------------------------------


@login_required
@require_GET
def account_page(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/account.html", {"account": _personal(request)})  # the user's own account


@login_required
@require_POST
def sessions_end(request: HttpRequest) -> HttpResponse:
    ended = services.user_sessions_end(user=request.user, keep_session_key=request.session.session_key)
    messages.success(request, f"Signed out of {ended} other session{'s' if ended != 1 else ''}.")
    return redirect("dash-accounts:account")


@login_required
@require_POST
def account_delete(request: HttpRequest) -> HttpResponse:
    account = _personal(request)  # never an organization from here
    password = request.POST.get("password", "")
    if not password or len(password) > 4096 or not request.user.check_password(password):
        messages.error(request, "Enter your password to delete the account.")
        return render(request, "accounts/account.html", {"account": account}, status=400)
    if request.POST.get("confirm") != "on":
        messages.error(request, "Tick the box to confirm that the remaining credits are forfeited.")
        return render(request, "accounts/account.html", {"account": account}, status=400)
    user = request.user
    billing_account_delete(account=account, user=user)
    logout(request)
    messages.success(request, "Your account was deleted. The email address can sign up again as a new account.")
    return redirect("home")
