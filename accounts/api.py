"""GET /key (any key) and the management API /keys (management keys only)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from rest_framework.response import Response
from rest_framework.views import APIView

from activity.selectors import KeyUsage, free_requests_today, key_usage_by_key
from billing.money import MoneyError, usd_input_to_nanos
from openrouter_site.errors import BadRequest, NotFound
from openrouter_site.inputs import query_int

from . import selectors, services
from .auth import api_key_from_request, management_key_from_request
from .models import ApiKey
from .presenters import current_key_body, key_body

LIMIT_RESETS = {"daily", "weekly", "monthly", None}
MAX_LIMIT_USD = 1_000_000
MAX_NAME_LENGTH = 200


class CurrentKeyApi(APIView):
    def get(self, request):
        api_key = api_key_from_request(request)
        usage = key_usage_by_key(key_ids=[api_key.id]).get(api_key.id, KeyUsage())
        free_used = free_requests_today(account_id=api_key.account_id)
        return Response({"data": current_key_body(api_key, usage, free_requests_used=free_used)})


class KeysApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        include_disabled = request.query_params.get("include_disabled", "false").lower() in {"true", "1"}
        offset = _int_param(request, "offset", 0)
        keys = selectors.api_key_list(account=manager.account, include_disabled=include_disabled, offset=offset)
        usage = key_usage_by_key(key_ids=[k.id for k in keys])
        return Response({"data": [key_body(k, usage.get(k.id, KeyUsage())) for k in keys]})

    def post(self, request):
        manager = management_key_from_request(request)
        data = _object(request.data)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("'name' is required: a non-empty string")
        if len(name.strip()) > MAX_NAME_LENGTH:
            raise BadRequest(f"'name' must be at most {MAX_NAME_LENGTH} characters")
        fields = _key_fields(data)
        with transaction.atomic():
            api_key, raw = services.api_key_create(
                account=manager.account, name=name.strip()[:200], creator=manager.creator, **fields
            )
        api_key = selectors.api_key_get_by_hash(key_hash=api_key.hash)
        return Response({"data": key_body(api_key, KeyUsage()), "key": raw}, status=201)


class KeyDetailApi(APIView):
    def _get(self, request, key_hash: str) -> ApiKey:
        manager = management_key_from_request(request)
        api_key = selectors.api_key_get_by_hash(key_hash=key_hash.lower())
        if api_key is None or api_key.account_id != manager.account_id or api_key.is_management:
            raise NotFound("API key not found")
        return api_key

    def get(self, request, key_hash: str):
        api_key = self._get(request, key_hash)
        usage = key_usage_by_key(key_ids=[api_key.id]).get(api_key.id, KeyUsage())
        return Response({"data": key_body(api_key, usage)})

    def patch(self, request, key_hash: str):
        api_key = self._get(request, key_hash)
        data = _object(request.data)
        changes = _key_fields(data, allow_expiry=False)
        if "name" in data:
            if not isinstance(data["name"], str) or not data["name"].strip():
                raise BadRequest("'name' must be a non-empty string")
            if len(data["name"].strip()) > MAX_NAME_LENGTH:
                raise BadRequest(f"'name' must be at most {MAX_NAME_LENGTH} characters")
            changes["name"] = data["name"].strip()[:200]
        if "disabled" in data:
            if not isinstance(data["disabled"], bool):
                raise BadRequest("'disabled' must be a boolean")
            changes["disabled"] = data["disabled"]
        with transaction.atomic():
            services.api_key_update(api_key=api_key, **changes)
        usage = key_usage_by_key(key_ids=[api_key.id]).get(api_key.id, KeyUsage())
        return Response({"data": key_body(api_key, usage)})

    def delete(self, request, key_hash: str):
        api_key = self._get(request, key_hash)
        with transaction.atomic():
            services.api_key_delete(api_key=api_key)
        return Response({"deleted": True})


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def _int_param(request, name: str, default: int) -> int:
    return query_int(request.query_params, name, default=default, message=f"'{name}' must be a non-negative integer")


def _key_fields(data: dict, *, allow_expiry: bool = True) -> dict:
    fields: dict = {}
    if "limit" in data:
        if data["limit"] is None:
            fields["limit"] = None
        else:
            try:
                limit = usd_input_to_nanos(data["limit"])
            except MoneyError:
                raise BadRequest("'limit' must be a number of USD or null") from None
            if limit < 0:
                raise BadRequest("'limit' must not be negative")
            if limit > MAX_LIMIT_USD * 10**9:
                raise BadRequest(f"'limit' must be at most {MAX_LIMIT_USD} USD")
            fields["limit"] = limit
    if "limit_reset" in data:
        if not (data["limit_reset"] is None or isinstance(data["limit_reset"], str)) or data["limit_reset"] not in LIMIT_RESETS:
            raise BadRequest("'limit_reset' must be daily, weekly, monthly or null")
        fields["limit_reset"] = data["limit_reset"]
    if "include_byok_in_limit" in data:
        if not isinstance(data["include_byok_in_limit"], bool):
            raise BadRequest("'include_byok_in_limit' must be a boolean")
        fields["include_byok_in_limit"] = data["include_byok_in_limit"]
    if allow_expiry and data.get("expires_at") is not None:
        expires_at = _utc_datetime(data["expires_at"])
        if expires_at <= dt.datetime.now(dt.UTC):
            raise BadRequest("'expires_at' must be in the future")
        fields["expires_at"] = expires_at
    return fields


def _utc_datetime(value) -> dt.datetime:
    if not isinstance(value, str):
        raise BadRequest("'expires_at' must be an ISO 8601 UTC timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("'expires_at' must be an ISO 8601 UTC timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() != dt.timedelta(0):
        raise BadRequest("'expires_at' must be in UTC (end it with Z or +00:00)")
    return parsed
