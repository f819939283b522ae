"""Bearer-key authentication for the JSON API's Django views (not the hot path)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone

from openrouter_site.errors import Forbidden, Unauthorized

from .keys import bearer_token, key_check, key_hash
from .models import ApiKey
from .selectors import api_key_get_by_hash


def api_key_from_request(request: HttpRequest) -> ApiKey:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("No auth credentials found")
    api_key = api_key_get_by_hash(key_hash=key_hash(token))
    key_check(api_key, now=timezone.now())
    return api_key


def management_key_from_request(request: HttpRequest) -> ApiKey:
    api_key = api_key_from_request(request)
    if not api_key.is_management:
        raise Forbidden("Only management keys can perform this operation")
    return api_key
