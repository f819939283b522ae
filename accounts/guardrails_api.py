"""The management API /guardrails (management keys only), in the spec's shapes.

Content filters are not supported: ``content_filters``/``content_filter_builtins`` are accepted
only as null or empty and rendered as null. Everything lives in the account's one workspace.
"""

from __future__ import annotations

import math
import re
import uuid

from rest_framework.response import Response
from rest_framework.views import APIView

from billing.money import MoneyError, nanos_to_usd_number, usd_input_to_nanos
from openrouter_site.errors import BadRequest, NotFound
from openrouter_site.inputs import query_int

from . import guardrails as gr
from .auth import management_key_from_request
from .guardrail_rules import ZDR_GROUPS
from .models import Account, Guardrail
from .presenters import workspace_id

PAGE_DEFAULT, PAGE_MAX = 50, 100
MAX_LIMIT_USD = 1_000_000
MAX_LIST_ITEMS = 100
MAX_ITEM_LENGTH = 200
KEY_HASH = re.compile(r"^[a-f0-9]{64}$")
INTERVALS = ("daily", "weekly", "monthly")
BOOLEAN_FIELDS = (
    "enforce_zdr_anthropic", "enforce_zdr_openai", "enforce_zdr_google", "enforce_zdr_xai", "enforce_zdr_other",
    "enable_free_model_publication", "enable_free_model_training", "enable_paid_model_training",
)
LIST_FIELDS = ("allowed_models", "ignored_models", "allowed_providers", "ignored_providers")
ACCEPTED = {
    "name", "description", "limit_usd", "reset_interval", "include_byok_in_budgets", "enforce_zdr",
    "content_filters", "content_filter_builtins", "workspace_id", *BOOLEAN_FIELDS, *LIST_FIELDS,
}


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def guardrail_body(guardrail: Guardrail) -> dict:
    body = {
        "id": str(guardrail.id),
        "name": guardrail.name,
        "description": guardrail.description,
        "limit_usd": nanos_to_usd_number(guardrail.limit) if guardrail.limit is not None else None,
        "reset_interval": guardrail.reset_interval,
        "include_byok_in_budgets": guardrail.include_byok_in_budgets,
        "enforce_zdr": None,
    }
    for field in LIST_FIELDS:
        body[field] = getattr(guardrail, field)
    for field in BOOLEAN_FIELDS:
        body[field] = getattr(guardrail, field)
    body.update(
        content_filters=None,
        content_filter_builtins=None,
        workspace_id=workspace_id(guardrail.account),
        created_at=_iso(guardrail.created_at),
        updated_at=_iso(guardrail.updated_at),
    )
    return body


def key_assignment_body(assignment) -> dict:
    return {
        "id": str(assignment.id),
        "guardrail_id": str(assignment.guardrail_id),
        "key_hash": assignment.api_key.hash,
        "key_name": assignment.api_key.name,
        "key_label": assignment.api_key.label,
        "assigned_by": assignment.assigned_by,
        "created_at": _iso(assignment.created_at),
    }


def member_assignment_bodies(assignments) -> list[dict]:
    public = gr.user_public_ids(user_ids={a.user_id for a in assignments})
    return [
        {
            "id": str(a.id),
            "guardrail_id": str(a.guardrail_id),
            "user_id": public.get(a.user_id, ""),
            "organization_id": a.account.public_id,
            "assigned_by": a.assigned_by,
            "created_at": _iso(a.created_at),
        }
        for a in assignments
    ]


def _page(request) -> tuple[int, int]:
    offset = query_int(request.query_params, "offset", default=0, minimum=0,
                       message="'offset' must be an integer of at least 0")
    limit = query_int(request.query_params, "limit", default=PAGE_DEFAULT, minimum=1, maximum=PAGE_MAX,
                      message=f"'limit' must be an integer between 1 and {PAGE_MAX}")
    return offset, limit


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    if _has_nul(data):
        raise BadRequest("Strings must not contain NUL characters")
    return data


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _check_workspace(account: Account, value) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value.lower() != workspace_id(account):
        raise BadRequest("'workspace_id' is not a workspace of this account")


def _string_list(name: str, value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise BadRequest(f"'{name}' must be a list of non-empty strings, or null")
    if not value:
        raise BadRequest(f"'{name}' must list at least one item, or be null")
    if len(value) > MAX_LIST_ITEMS:
        raise BadRequest(f"'{name}' must have at most {MAX_LIST_ITEMS} items")
    if any(len(item) > MAX_ITEM_LENGTH for item in value):
        raise BadRequest(f"'{name}' items must be at most {MAX_ITEM_LENGTH} characters")
    return list(dict.fromkeys(item.strip() for item in value))


def _fields(data: dict, account: Account, *, creating: bool) -> dict:
    """The guardrail fields of a POST or PATCH body, validated (PATCH: only those present)."""
    unknown = sorted(set(data) - ACCEPTED)
    if unknown:
        raise BadRequest(f"Unknown field: '{str(unknown[0])[:64]}'")
    fields: dict = {}
    if "name" in data or creating:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("'name' is required: a non-empty string")
        if len(name.strip()) > 200:
            raise BadRequest("'name' must be at most 200 characters")
        fields["name"] = name.strip()
    if "description" in data:
        description = data["description"]
        if description is not None and not isinstance(description, str):
            raise BadRequest("'description' must be a string or null")
        if description is not None and len(description) > 1000:
            raise BadRequest("'description' must be at most 1000 characters")
        fields["description"] = description
    if "limit_usd" in data:
        value = data["limit_usd"]
        if value is None:
            fields["limit"] = None
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise BadRequest("'limit_usd' must be a number of USD or null")
            try:
                limit = usd_input_to_nanos(value)
            except MoneyError:
                raise BadRequest("'limit_usd' must be a number of USD or null") from None
            if limit < 0:
                raise BadRequest("'limit_usd' must not be negative")
            if limit > MAX_LIMIT_USD * 10**9:
                raise BadRequest(f"'limit_usd' must be at most {MAX_LIMIT_USD}")
            fields["limit"] = limit
    if "reset_interval" in data:
        interval = data["reset_interval"]
        if interval is not None and interval not in INTERVALS:
            raise BadRequest("'reset_interval' must be daily, weekly, monthly or null")
        fields["reset_interval"] = interval
    if "include_byok_in_budgets" in data:
        if not isinstance(data["include_byok_in_budgets"], bool):
            raise BadRequest("'include_byok_in_budgets' must be a boolean")
        fields["include_byok_in_budgets"] = data["include_byok_in_budgets"]
    for field in BOOLEAN_FIELDS:
        if field in data:
            if data[field] is not None and not isinstance(data[field], bool):
                raise BadRequest(f"'{field}' must be a boolean or null")
            fields[field] = data[field]
    if "enforce_zdr" in data:  # deprecated: copied into the group fields the body leaves unset
        if data["enforce_zdr"] is not None and not isinstance(data["enforce_zdr"], bool):
            raise BadRequest("'enforce_zdr' must be a boolean or null")
        if data["enforce_zdr"] is not None:
            for group in ZDR_GROUPS:
                fields.setdefault(f"enforce_zdr_{group}", data["enforce_zdr"])
    for field in LIST_FIELDS:
        if field in data:
            fields[field] = _string_list(field, data[field])
    for field in ("allowed_providers", "ignored_providers"):
        if fields.get(field):
            fields[field] = [p.lower() for p in fields[field]]
            unknown = gr.catalog_unknown(providers=fields[field])
            if unknown:
                raise BadRequest(f"'{field}' names an unknown provider: '{unknown[0][:64]}'")
    for field in ("allowed_models", "ignored_models"):
        if fields.get(field):
            unknown = gr.catalog_unknown(models=fields[field])
            if unknown:
                raise BadRequest(f"'{field}' names an unknown model: '{unknown[0][:64]}'")
    for field in ("content_filters", "content_filter_builtins"):
        if data.get(field) not in (None, []):
            raise BadRequest(f"'{field}' is not supported here: content filters are not available")
    _check_workspace(account, data.get("workspace_id"))
    return fields


def _guardrail(request, guardrail_id: str):
    manager = management_key_from_request(request)
    try:
        parsed = uuid.UUID(guardrail_id)
    except ValueError:
        raise NotFound("Guardrail not found") from None
    guardrail = gr.guardrail_get(account=manager.account, guardrail_id=parsed)
    if guardrail is None:
        raise NotFound("Guardrail not found")
    return manager, guardrail


class GuardrailsApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        offset, limit = _page(request)
        _check_workspace(manager.account, request.query_params.get("workspace_id"))
        rows, total = gr.guardrail_list(account=manager.account, offset=offset, limit=limit)
        return Response({"data": [guardrail_body(g) for g in rows], "total_count": total})

    def post(self, request):
        manager = management_key_from_request(request)
        fields = _fields(_object(request.data), manager.account, creating=True)
        guardrail = gr.guardrail_create(account=manager.account, **fields)
        return Response({"data": guardrail_body(guardrail)}, status=201)


class GuardrailDetailApi(APIView):
    def get(self, request, guardrail_id: str):
        _manager, guardrail = _guardrail(request, guardrail_id)
        return Response({"data": guardrail_body(guardrail)})

    def patch(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        fields = _fields(_object(request.data), manager.account, creating=False)
        gr.guardrail_update(guardrail=guardrail, **fields)
        return Response({"data": guardrail_body(guardrail)})

    def delete(self, request, guardrail_id: str):
        _manager, guardrail = _guardrail(request, guardrail_id)
        gr.guardrail_delete(guardrail=guardrail)
        return Response({"deleted": True})


def _key_hashes(data: dict) -> list[str]:
    hashes = data.get("key_hashes")
    if not isinstance(hashes, list) or not hashes or not all(isinstance(h, str) for h in hashes):
        raise BadRequest("'key_hashes' must be a non-empty list of key hashes")
    if len(hashes) > MAX_LIST_ITEMS:
        raise BadRequest(f"'key_hashes' must have at most {MAX_LIST_ITEMS} items")
    hashes = list(dict.fromkeys(h.lower() for h in hashes))
    if not all(KEY_HASH.match(h) for h in hashes):
        raise BadRequest("'key_hashes' must be SHA-256 hex key hashes")
    return hashes


def _member_ids(data: dict) -> list[str]:
    ids = data.get("member_user_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BadRequest("'member_user_ids' must be a non-empty list of user ids")
    if len(ids) > MAX_LIST_ITEMS:
        raise BadRequest(f"'member_user_ids' must have at most {MAX_LIST_ITEMS} items")
    if any(len(i) > MAX_ITEM_LENGTH for i in ids):
        raise BadRequest("'member_user_ids' items are too long")
    return list(dict.fromkeys(ids))


def _assigner(manager) -> str | None:
    if manager.creator_id is None:
        return None
    return gr.user_public_ids(user_ids=[manager.creator_id]).get(manager.creator_id)


class GuardrailKeyAssignmentsApi(APIView):
    def get(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        offset, limit = _page(request)
        rows, total = gr.guardrail_key_assignments(account=manager.account, guardrail=guardrail, offset=offset, limit=limit)
        return Response({"data": [key_assignment_body(a) for a in rows], "total_count": total})

    def post(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        hashes = _key_hashes(_object(request.data))
        keys, unknown = gr.account_keys_by_hash(account=manager.account, hashes=hashes)
        if unknown:
            raise NotFound(f"API key not found: {unknown[0]}")
        count = gr.guardrail_keys_assign(guardrail=guardrail, keys=keys, assigned_by=_assigner(manager))
        return Response({"assigned_count": count})


class GuardrailKeyUnassignApi(APIView):
    def post(self, request, guardrail_id: str):
        _manager, guardrail = _guardrail(request, guardrail_id)
        hashes = _key_hashes(_object(request.data))
        return Response({"unassigned_count": gr.guardrail_keys_unassign(guardrail=guardrail, key_hashes=hashes)})


class GuardrailMemberAssignmentsApi(APIView):
    def get(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        offset, limit = _page(request)
        rows, total = gr.guardrail_member_assignments(
            account=manager.account, guardrail=guardrail, offset=offset, limit=limit
        )
        return Response({"data": member_assignment_bodies(rows), "total_count": total})

    def post(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        ids = _member_ids(_object(request.data))
        users, unknown = gr.account_member_users_by_public_id(account=manager.account, public_ids=ids)
        if unknown:
            raise NotFound(f"Member not found: {unknown[0][:64]}")
        count = gr.guardrail_members_assign(guardrail=guardrail, users=list(users.values()), assigned_by=_assigner(manager))
        return Response({"assigned_count": count})


class GuardrailMemberUnassignApi(APIView):
    def post(self, request, guardrail_id: str):
        manager, guardrail = _guardrail(request, guardrail_id)
        ids = _member_ids(_object(request.data))
        users, _unknown = gr.account_member_users_by_public_id(account=manager.account, public_ids=ids)
        count = gr.guardrail_members_unassign(guardrail=guardrail, users=list(users.values()))
        return Response({"unassigned_count": count})


class AccountKeyAssignmentsApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        offset, limit = _page(request)
        rows, total = gr.guardrail_key_assignments(account=manager.account, offset=offset, limit=limit)
        return Response({"data": [key_assignment_body(a) for a in rows], "total_count": total})


class AccountMemberAssignmentsApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        offset, limit = _page(request)
        rows, total = gr.guardrail_member_assignments(account=manager.account, offset=offset, limit=limit)
        return Response({"data": member_assignment_bodies(rows), "total_count": total})


class OrganizationMembersApi(APIView):
    """GET /organization/members: the members of the management key's organization."""

    def get(self, request):
        manager = management_key_from_request(request)
        offset, limit = _page(request)
        if manager.account.kind != Account.Kind.ORGANIZATION:
            raise NotFound("This key does not belong to an organization")
        members = list(gr.account_members(account=manager.account))
        page = members[offset : offset + limit]
        data = [
            {
                "id": public_id,
                "email": m.user.email,
                "first_name": m.user.first_name or None,
                "last_name": m.user.last_name or None,
                "role": f"org:{m.role}",
            }
            for m in page
            for public_id in [gr.user_public_ids(user_ids=[m.user_id]).get(m.user_id, "")]
        ]
        return Response({"data": data, "total_count": len(members)})
