"""The management API /byok: the provider keys an account brings (management keys only).

Shapes follow the spec's ``BYOKKey``; the raw key is write-only (encrypted at rest, never
returned), responses carry its masked ``label``. One extension: ``always_use`` ("Always use
for this provider": no fallback to OpenRouter's shared capacity), accepted on POST/PATCH and
rendered. All credentials live in the account's one (default) workspace.
"""

from __future__ import annotations

import re
import uuid

from rest_framework.response import Response
from rest_framework.views import APIView

from openrouter_site.errors import BadRequest, NotFound
from openrouter_site.inputs import MAX_QUERY_INT, query_int

from . import selectors, services
from .auth import management_key_from_request
from .models import Account, ProviderKey
from .presenters import BYOK_PROVIDER_SLUG_TO_CATALOG, provider_key_body, workspace_id

MAX_NAME_LENGTH = 255
MAX_KEY_LENGTH = 16_384  # room for a service-account JSON (Vertex, Bedrock)
MAX_LIST_ITEMS = 100
MAX_ITEM_LENGTH = 200
PAGE_DEFAULT, PAGE_MAX = 50, 100
KEY_HASH = re.compile(r"^[a-f0-9]{64}$")


class ByokKeysApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        offset = _int_param(request, "offset", 0, minimum=0)
        limit = _int_param(request, "limit", PAGE_DEFAULT, minimum=1, maximum=PAGE_MAX)
        _check_workspace(manager.account, request.query_params.get("workspace_id"))
        provider = request.query_params.get("provider")
        provider_id = _provider(provider).id if provider is not None else None
        keys, total = selectors.provider_key_list(
            account=manager.account, provider_id=provider_id, offset=offset, limit=limit
        )
        return Response({"data": [provider_key_body(k) for k in keys], "total_count": total})

    def post(self, request):
        manager = management_key_from_request(request)
        data = _object(request.data)
        if "provider" not in data:
            raise BadRequest("'provider' is required")
        provider = _provider(data["provider"])
        if "key" not in data:
            raise BadRequest("'key' is required: the provider's API key")
        key = _secret(data["key"])
        _check_workspace(manager.account, data.get("workspace_id"))
        fields = _settings(data, manager.account)
        provider_key = services.provider_key_create(account=manager.account, provider=provider, key=key, **fields)
        return Response({"data": provider_key_body(provider_key)}, status=201)


class ByokKeyDetailApi(APIView):
    def _get(self, request, key_id: str) -> ProviderKey:
        manager = management_key_from_request(request)
        try:
            parsed = uuid.UUID(key_id)
        except ValueError:
            raise NotFound("BYOK credential not found") from None
        provider_key = selectors.provider_key_get(account=manager.account, key_id=parsed)
        if provider_key is None:
            raise NotFound("BYOK credential not found")
        return provider_key

    def get(self, request, key_id: str):
        return Response({"data": provider_key_body(self._get(request, key_id))})

    def patch(self, request, key_id: str):
        provider_key = self._get(request, key_id)
        data = _object(request.data)
        if "provider" in data:
            raise BadRequest("'provider' cannot be changed; create a new credential instead")
        key = _secret(data["key"]) if "key" in data else None
        changes = _settings(data, provider_key.account)
        services.provider_key_update(provider_key=provider_key, key=key, **changes)
        return Response({"data": provider_key_body(provider_key)})

    def delete(self, request, key_id: str):
        services.provider_key_delete(provider_key=self._get(request, key_id))
        return Response({"deleted": True})


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def _int_param(request, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    bound = f" and at most {maximum}" if maximum is not None else ""
    return query_int(
        request.query_params, name, default=default, minimum=minimum, maximum=maximum or MAX_QUERY_INT,
        message=f"'{name}' must be an integer of at least {minimum}{bound}",
    )


def _provider(value):
    if not isinstance(value, str) or not value:
        raise BadRequest("'provider' must be a provider slug, e.g. 'openai'")
    provider = selectors.byok_provider_get(slug=BYOK_PROVIDER_SLUG_TO_CATALOG.get(value, value))
    if provider is None:
        raise BadRequest(f"Unknown provider: '{value[:64]}'")
    return provider


def _secret(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'key' must be a non-empty string")
    if len(value) > MAX_KEY_LENGTH:
        raise BadRequest(f"'key' must be at most {MAX_KEY_LENGTH} characters")
    return value.strip()


def _check_workspace(account: Account, value) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value.lower() != workspace_id(account):
        raise BadRequest("'workspace_id' is not a workspace of this account")


def _settings(data: dict, account: Account) -> dict:
    """The optional fields POST and PATCH share, validated."""
    fields: dict = {}
    if "name" in data:
        name = data["name"]
        if name is not None and not isinstance(name, str):
            raise BadRequest("'name' must be a string or null")
        if name is not None and len(name.strip()) > MAX_NAME_LENGTH:
            raise BadRequest(f"'name' must be at most {MAX_NAME_LENGTH} characters")
        fields["name"] = (name.strip() or None) if name is not None else None
    for flag in ("disabled", "is_fallback", "always_use"):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise BadRequest(f"'{flag}' must be a boolean")
            fields[flag] = data[flag]
    for field in ("allowed_models", "allowed_user_ids"):
        if field in data:
            fields[field] = _string_list(field, data[field])
    if "allowed_api_key_hashes" in data:
        hashes = _string_list("allowed_api_key_hashes", data["allowed_api_key_hashes"])
        if hashes is not None:
            if not hashes:
                raise BadRequest("'allowed_api_key_hashes' must list at least one key hash, or be null")
            if not all(KEY_HASH.match(h) for h in hashes):
                raise BadRequest("'allowed_api_key_hashes' must be SHA-256 hex key hashes")
            unknown = selectors.api_key_hashes_not_owned(account=account, hashes=hashes)
            if unknown:
                raise BadRequest("'allowed_api_key_hashes' names keys that are not yours", metadata={"hashes": unknown})
        fields["allowed_api_key_hashes"] = hashes
    return fields


def _string_list(name: str, value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise BadRequest(f"'{name}' must be a list of non-empty strings, or null")
    if len(value) > MAX_LIST_ITEMS:
        raise BadRequest(f"'{name}' must have at most {MAX_LIST_ITEMS} items")
    if any(len(item) > MAX_ITEM_LENGTH for item in value):
        raise BadRequest(f"'{name}' items must be at most {MAX_ITEM_LENGTH} characters")
    return list(dict.fromkeys(value))  # without duplicates, in order
