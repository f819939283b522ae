"""OAuth PKCE's JSON API: ``POST /auth/keys`` (exchange a code, no auth) and ``POST /auth/keys/code``
(create a code server-side, any API key)."""

from __future__ import annotations

import datetime as dt

from rest_framework.response import Response
from rest_framework.views import APIView

from billing.money import MoneyError, usd_input_to_nanos
from openrouter_site.errors import BadRequest, Forbidden

from . import oauth
from .auth import api_key_from_request
from .presenters import workspace_id

MAX_LIMIT_USD = 1_000_000
LIMIT_RESETS = ("daily", "weekly", "monthly")


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


class AuthKeysApi(APIView):
    """Exchange: ``{code, code_verifier?, code_challenge_method?}`` -> ``{key, user_id}``."""

    def post(self, request):
        data = _object(request.data)
        code = data.get("code")
        if not isinstance(code, str):
            raise BadRequest("'code' is required: a string")
        verifier = data.get("code_verifier")
        if verifier is not None and not isinstance(verifier, str):
            raise BadRequest("'code_verifier' must be a string")
        method = data.get("code_challenge_method")
        if method is not None and method not in oauth.METHODS:
            raise BadRequest(oauth.INVALID_METHOD)
        api_key, raw = oauth.oauth_code_exchange(code=code, code_verifier=verifier, code_challenge_method=method)
        return Response({"key": raw, "user_id": api_key.account.public_id})


class AuthKeysCodeApi(APIView):
    """A code created by an app that already holds a key of the user's, for a new key with its own settings.

    A key cannot mint a stronger one: when the calling key has a credit limit or an expiry, the new
    key's limit and expiry are at most the caller's."""

    def post(self, request):
        caller = api_key_from_request(request)
        data = _object(request.data)
        callback = oauth.callback_parse(data.get("callback_url"))
        if callback.headless:
            raise BadRequest("'callback_url' is required")
        challenge, method = oauth.challenge_parse(
            data.get("code_challenge"), data.get("code_challenge_method"), required=False
        )
        limit = _limit(data.get("limit"))
        if caller.limit is not None:
            limit = caller.limit if limit is None else min(limit, caller.limit)
        limit_reset = data.get("usage_limit_type")
        if limit_reset is not None and limit_reset not in LIMIT_RESETS:
            raise BadRequest("'usage_limit_type' must be daily, weekly or monthly")
        if limit_reset is not None and limit is None:
            raise BadRequest("'usage_limit_type' needs a 'limit'")
        expires_at = _expires_at(data.get("expires_at"))
        if caller.expires_at is not None:
            expires_at = caller.expires_at if expires_at is None else min(expires_at, caller.expires_at)
        label = oauth.label_parse(data.get("key_label"))
        workspace = data.get("workspace_id")
        if workspace is not None and workspace != workspace_id(caller.account):
            raise Forbidden("This workspace is not the key's")  # another account's, or none: 403 as the spec lists
        code, raw = oauth.oauth_code_create(
            account=caller.account,
            user=caller.creator or caller.account.owner,
            callback=callback,
            code_challenge=challenge,
            code_challenge_method=method,
            key_label=label,
            key_limit=limit,
            key_limit_reset=limit_reset,
            key_expires_at=expires_at,
        )
        return Response({"data": {"id": raw, "app_id": code.app_id, "created_at": _iso(code.created_at)}})


def _limit(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest("'limit' must be a number of USD")
    try:
        nanos = usd_input_to_nanos(value)
    except MoneyError:
        raise BadRequest("'limit' must be a number of USD") from None
    if nanos < 0:
        raise BadRequest("'limit' must not be negative")
    if nanos > MAX_LIMIT_USD * 10**9:
        raise BadRequest(f"'limit' must be at most {MAX_LIMIT_USD} USD")
    return nanos


def _expires_at(value) -> dt.datetime | None:
    if value is None:
        return None
    message = "'expires_at' must be an ISO 8601 UTC timestamp with seconds (YYYY-MM-DDTHH:MM:SSZ)"
    if not isinstance(value, str) or len(value) > 40:
        raise BadRequest(message)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(message) from None
    if parsed.tzinfo is None or parsed.utcoffset() != dt.timedelta(0):
        raise BadRequest("'expires_at' must be in UTC (end it with Z or +00:00)")
    if parsed <= dt.datetime.now(dt.UTC):
        raise BadRequest("'expires_at' must be in the future")
    return parsed
