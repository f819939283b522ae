"""API keys as OpenRouter renders them (amounts in USD numbers)."""

from __future__ import annotations

import datetime as dt
import uuid

from activity.selectors import KeyUsage
from billing.money import nanos_to_usd_number

from .models import Account, ApiKey, ProviderKey

WORKSPACE_NAMESPACE = uuid.UUID("6f1d2c1e-2b7a-4a61-9a8e-0e6bd5b1c0aa")
# Free-model (":free") requests per UTC day: 50, or 1000 once $10 of credits were purchased.
FREE_MODEL_DAILY_REQUESTS = 50
FREE_MODEL_DAILY_REQUESTS_PAID = 1000
FREE_MODEL_PAID_THRESHOLD = 10 * 10**9  # nano-dollars


def workspace_id(account: Account) -> str:
    return str(uuid.uuid5(WORKSPACE_NAMESPACE, account.public_id))


def _creator_user_id(api_key: ApiKey) -> str:
    """Who created the key: the account's own id, or in an organization the creator's user id."""
    if api_key.account.kind != Account.Kind.ORGANIZATION or api_key.creator_id is None:
        return api_key.account.public_id
    personal = Account.objects.filter(owner_id=api_key.creator_id, kind=Account.Kind.PERSONAL).order_by("id").first()
    return personal.public_id if personal is not None else api_key.account.public_id


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _window_usage(api_key: ApiKey, usage: KeyUsage) -> int:
    """What counts against the key's limit in its window: its spend, and its BYOK usage when
    ``include_byok_in_limit`` (as the gateway's holds count it)."""
    spent = {"daily": usage.daily, "weekly": usage.weekly, "monthly": usage.monthly}.get(api_key.limit_reset, usage.total)
    if api_key.include_byok_in_limit:
        byok = {"daily": usage.byok_daily, "weekly": usage.byok_weekly, "monthly": usage.byok_monthly}
        spent += byok.get(api_key.limit_reset, usage.byok_total)
    return spent


def _next_reset(limit_reset: str | None, now: dt.datetime) -> dt.datetime | None:
    """When the key's limit window rolls over: next UTC midnight, next Monday or the 1st of next month."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if limit_reset == "daily":
        return day + dt.timedelta(days=1)
    if limit_reset == "weekly":
        return day + dt.timedelta(days=7 - day.weekday())
    if limit_reset == "monthly":
        return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return None


def _key_budget(api_key: ApiKey, usage: KeyUsage) -> dict | None:
    """The key's own limit as a budget layer (scope ``key_limit``); None without a limit."""
    if api_key.limit is None:
        return None
    spent = _window_usage(api_key, usage)
    return {
        "scope": "key_limit",
        "budget_id": None,
        "guardrail_id": None,
        "include_byok": api_key.include_byok_in_limit,
        "limit_usd": nanos_to_usd_number(api_key.limit),
        "spend_usd": nanos_to_usd_number(spent),
        "remaining_usd": nanos_to_usd_number(api_key.limit - spent),
        "reset_interval": api_key.limit_reset,
        "resets_at": _iso(_next_reset(api_key.limit_reset, dt.datetime.now(dt.UTC))),
    }


def _limit_fields(api_key: ApiKey, usage: KeyUsage) -> dict:
    remaining = None
    if api_key.limit is not None:
        remaining = nanos_to_usd_number(max(api_key.limit - _window_usage(api_key, usage), 0))
    return {
        "limit": nanos_to_usd_number(api_key.limit) if api_key.limit is not None else None,
        "limit_remaining": remaining,
        "limit_reset": api_key.limit_reset,
        "include_byok_in_limit": api_key.include_byok_in_limit,
        "usage": nanos_to_usd_number(usage.total),
        "usage_daily": nanos_to_usd_number(usage.daily),
        "usage_weekly": nanos_to_usd_number(usage.weekly),
        "usage_monthly": nanos_to_usd_number(usage.monthly),
        "byok_usage": nanos_to_usd_number(usage.byok_total),
        "byok_usage_daily": nanos_to_usd_number(usage.byok_daily),
        "byok_usage_weekly": nanos_to_usd_number(usage.byok_weekly),
        "byok_usage_monthly": nanos_to_usd_number(usage.byok_monthly),
    }


def key_body(api_key: ApiKey, usage: KeyUsage) -> dict:
    """The management API's Key object."""
    return {
        "hash": api_key.hash,
        "name": api_key.name,
        "label": api_key.label,
        "disabled": api_key.disabled,
        **_limit_fields(api_key, usage),
        "created_at": _iso(api_key.created_at),
        "updated_at": _iso(api_key.updated_at),
        "creator_user_id": _creator_user_id(api_key),
        "expires_at": _iso(api_key.expires_at),
        "workspace_id": workspace_id(api_key.account),
        "external_user": None,
        "last_used_at": _iso(usage.last_used),
    }


def current_key_body(api_key: ApiKey, usage: KeyUsage, *, free_requests_used: int = 0) -> dict:
    """GET /key: the calling key."""
    account = api_key.account
    budget = _key_budget(api_key, usage)
    free_limit = (
        FREE_MODEL_DAILY_REQUESTS_PAID
        if account.total_purchased >= FREE_MODEL_PAID_THRESHOLD
        else FREE_MODEL_DAILY_REQUESTS
    )
    return {
        "label": api_key.label,
        **_limit_fields(api_key, usage),
        "is_free_tier": api_key.account.total_purchased == 0,
        "is_management_key": api_key.is_management,
        "is_provisioning_key": api_key.is_management,
        "creator_user_id": _creator_user_id(api_key),
        "expires_at": _iso(api_key.expires_at),
        "rate_limit": {"requests": -1, "interval": "1h", "note": "This field is deprecated and safe to ignore."},
        "allowed_data_regions": ["global"],
        "budgets": [budget] if budget else [],
        "effective_budget": budget,
        "free_model_daily_requests": {
            "limit": free_limit,
            "used": free_requests_used,
            "remaining": max(free_limit - free_requests_used, 0),
        },
        "organization_id": account.public_id if account.kind == Account.Kind.ORGANIZATION else None,
        "workspace_id": workspace_id(account),
    }


# BYOK provider slugs where OpenRouter's spelling (``BYOKProviderSlug``) differs from our catalog's.
BYOK_PROVIDER_SLUG_TO_CATALOG = {"xai": "x-ai"}
_CATALOG_TO_BYOK_PROVIDER_SLUG = {v: k for k, v in BYOK_PROVIDER_SLUG_TO_CATALOG.items()}


def provider_key_body(provider_key: ProviderKey) -> dict:
    """The management API's BYOKKey object. The key itself never appears, only its masked label."""
    slug = provider_key.provider.slug
    return {
        "id": str(provider_key.id),
        "provider": _CATALOG_TO_BYOK_PROVIDER_SLUG.get(slug, slug),
        "workspace_id": workspace_id(provider_key.account),
        "name": provider_key.name,
        "label": provider_key.label,
        "disabled": provider_key.disabled,
        "is_fallback": provider_key.is_fallback,
        "always_use": provider_key.always_use,  # ours: "Always use for this provider" (no shared fallback)
        "allowed_models": provider_key.allowed_models,
        "allowed_api_key_hashes": provider_key.allowed_api_key_hashes,
        "allowed_user_ids": provider_key.allowed_user_ids,
        "sort_order": provider_key.sort_order,
        "created_at": _iso(provider_key.created_at),
    }
