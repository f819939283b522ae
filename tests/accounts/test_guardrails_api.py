"""The management API /guardrails and /organization/members: shapes (validated against the spec),
validation, assignment semantics (a key holds one guardrail) and isolation between accounts."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import Account, GuardrailKeyAssignment
from accounts.organizations import organization_create, organization_member_add
from accounts.services import user_get_or_create
from routing.models import Provider
from tests.factories import KeyBundle, make_account, make_key
from tests.management_api import assert_error, call
from tests.openapi import validate_request, validate_response

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def providers():
    for slug, name in (("openai", "OpenAI"), ("anthropic", "Anthropic"), ("deepinfra", "DeepInfra")):
        Provider.objects.get_or_create(slug=slug, defaults={"name": name})


@pytest.fixture
def manager() -> KeyBundle:
    return make_key(management=True, name="manager")


def create(client, manager, **body) -> dict:
    body = {"name": "Prod", **body}
    validate_request("/guardrails", "post", body)
    response = call(client, "POST", "/guardrails", manager, body)
    assert response.status_code == 201, response.content
    validate_response("/guardrails", "post", 201, response.json())
    return response.json()["data"]


def test_create_get_list_patch_delete(client, manager):
    data = create(
        client, manager, description="team budget", limit_usd=12.5, reset_interval="weekly",
        allowed_providers=["OpenAI", "anthropic"], enforce_zdr=True, enforce_zdr_openai=False,
        enable_paid_model_training=False,
    )
    assert data["limit_usd"] == 12.5 and data["reset_interval"] == "weekly"
    assert data["allowed_providers"] == ["openai", "anthropic"]
    assert data["enforce_zdr_openai"] is False and data["enforce_zdr_anthropic"] is True  # deprecated flag fills unset
    assert data["include_byok_in_budgets"] is False and data["updated_at"] is None
    gid = data["id"]

    response = call(client, "GET", f"/guardrails/{gid}", manager)
    validate_response("/guardrails/{id}", "get", 200, response.json())
    assert response.json()["data"] == data

    response = call(client, "GET", "/guardrails?limit=1", manager)
    validate_response("/guardrails", "get", 200, response.json())
    assert response.json()["total_count"] == 1 and response.json()["data"][0]["id"] == gid

    # PATCH: replace semantics for collections; absent fields unchanged
    response = call(client, "PATCH", f"/guardrails/{gid}", manager, {"allowed_providers": ["deepinfra"], "limit_usd": None})
    assert response.status_code == 200, response.content
    validate_response("/guardrails/{id}", "patch", 200, response.json())
    patched = response.json()["data"]
    assert patched["allowed_providers"] == ["deepinfra"] and patched["limit_usd"] is None
    assert patched["description"] == "team budget" and patched["updated_at"] is not None

    response = call(client, "DELETE", f"/guardrails/{gid}", manager)
    assert response.status_code == 200 and response.json() == {"deleted": True}
    validate_response("/guardrails/{id}", "delete", 200, response.json())
    assert_error(call(client, "GET", f"/guardrails/{gid}", manager), 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 201},
        {"name": 5},
        {"name": "n", "limit_usd": -1},
        {"name": "n", "limit_usd": "1e999999"},
        {"name": "n", "limit_usd": 1e300},
        {"name": "n", "limit_usd": True},
        {"name": "n", "reset_interval": "hourly"},
        {"name": "n", "include_byok_in_budgets": "yes"},
        {"name": "n", "allowed_models": []},
        {"name": "n", "allowed_models": ["no/such-model"]},
        {"name": "n", "allowed_providers": ["nowhere"]},
        {"name": "n", "allowed_providers": "openai"},
        {"name": "n", "ignored_providers": [""]},
        {"name": "n", "enforce_zdr_openai": "true"},
        {"name": "n", "description": "d" * 1001},
        {"name": "n", "content_filters": [{"pattern": "x", "action": "block"}]},
        {"name": "n", "workspace_id": str(uuid.uuid4())},
        {"name": "n", "surprise": 1},
    ],
)
def test_bad_bodies_are_400(client, manager, body):
    assert_error(call(client, "POST", "/guardrails", manager, body), 400)


def test_bad_json_and_paging_are_400(client, manager):
    assert_error(call(client, "POST", "/guardrails", manager, raw="[1, 2"), 400)
    assert_error(call(client, "POST", "/guardrails", manager, body=[1]), 400)
    for query in ("limit=0", "limit=101", "offset=-1", "limit=abc", "offset=1e999"):
        assert_error(call(client, "GET", f"/guardrails?{query}", manager), 400)


def test_auth_and_isolation(client, manager):
    mine = create(client, manager)
    other = make_key(management=True)
    inference = make_key(account=manager.account)
    assert_error(call(client, "GET", "/guardrails"), 401)
    assert_error(call(client, "GET", "/guardrails", inference), 403)
    gid = mine["id"]
    for method, path, body in (
        ("GET", f"/guardrails/{gid}", None),
        ("PATCH", f"/guardrails/{gid}", {"name": "stolen"}),
        ("DELETE", f"/guardrails/{gid}", None),
        ("GET", f"/guardrails/{gid}/assignments/keys", None),
        ("POST", f"/guardrails/{gid}/assignments/keys", {"key_hashes": [inference.key.hash]}),
        ("POST", f"/guardrails/{gid}/assignments/keys/remove", {"key_hashes": [inference.key.hash]}),
        ("GET", f"/guardrails/{gid}/assignments/members", None),
        ("POST", f"/guardrails/{gid}/assignments/members", {"member_user_ids": [manager.account.public_id]}),
        ("POST", f"/guardrails/{gid}/assignments/members/remove", {"member_user_ids": [manager.account.public_id]}),
    ):
        assert_error(call(client, method, path, other, body), 404)
    assert call(client, "GET", "/guardrails", other).json() == {"data": [], "total_count": 0}
    assert_error(call(client, "GET", "/guardrails/not-a-uuid", manager), 404)
    assert_error(call(client, "GET", f"/guardrails/{uuid.uuid4()}", manager), 404)
    # another account's key cannot be assigned to my guardrail
    foreign = make_key(account=other.account)
    assert_error(call(client, "POST", f"/guardrails/{gid}/assignments/keys", manager, {"key_hashes": [foreign.key.hash]}), 404)
    assert not GuardrailKeyAssignment.objects.exists()


def test_key_assignments_replace_and_list(client, manager):
    first = create(client, manager, name="first")
    second = create(client, manager, name="second")
    key_a = make_key(account=manager.account, name="a")
    key_b = make_key(account=manager.account, name="b")
    body = {"key_hashes": [key_a.key.hash, key_b.key.hash, key_a.key.hash.upper()]}
    validate_request("/guardrails/{id}/assignments/keys", "post", body)
    response = call(client, "POST", f"/guardrails/{first['id']}/assignments/keys", manager, body)
    assert response.status_code == 200 and response.json() == {"assigned_count": 2}
    validate_response("/guardrails/{id}/assignments/keys", "post", 200, response.json())

    listed = call(client, "GET", f"/guardrails/{first['id']}/assignments/keys", manager).json()
    validate_response("/guardrails/{id}/assignments/keys", "get", 200, listed)
    assert listed["total_count"] == 2
    assert {a["key_hash"] for a in listed["data"]} == {key_a.key.hash, key_b.key.hash}
    assert listed["data"][0]["assigned_by"] == manager.account.public_id

    # assigning key a to the second guardrail moves it there
    response = call(client, "POST", f"/guardrails/{second['id']}/assignments/keys", manager, {"key_hashes": [key_a.key.hash]})
    assert response.json() == {"assigned_count": 1}
    assert GuardrailKeyAssignment.objects.get(api_key=key_a.key).guardrail_id == uuid.UUID(second["id"])
    everything = call(client, "GET", "/guardrails/assignments/keys", manager).json()
    validate_response("/guardrails/assignments/keys", "get", 200, everything)
    assert everything["total_count"] == 2

    response = call(
        client, "POST", f"/guardrails/{first['id']}/assignments/keys/remove", manager,
        {"key_hashes": [key_a.key.hash, key_b.key.hash]},
    )
    assert response.json() == {"unassigned_count": 1}  # key a is no longer on the first
    validate_response("/guardrails/{id}/assignments/keys/remove", "post", 200, response.json())
    for body in ({}, {"key_hashes": []}, {"key_hashes": ["zz"]}, {"key_hashes": "x"}):
        assert_error(call(client, "POST", f"/guardrails/{first['id']}/assignments/keys", manager, body), 400)
    # a management key is not an inference key: not assignable
    assert_error(
        call(client, "POST", f"/guardrails/{first['id']}/assignments/keys", manager, {"key_hashes": [manager.key.hash]}),
        404,
    )


def _org_with_members(n: int):
    owner = make_account(credits="0")
    org = organization_create(owner=owner.owner, name="Acme")
    members = []
    for i in range(n):
        user, _ = user_get_or_create(email=f"member{i}-{uuid.uuid4().hex[:6]}@example.com")
        make_account(email=user.email, credits="0")
        organization_member_add(organization=org, user=user)
        members.append(user)
    return owner, org, members


def _public(user) -> str:
    return Account.objects.get(owner=user, kind=Account.Kind.PERSONAL).public_id


def test_member_assignments_and_organization_members(client):
    owner, org, (alice, bob) = _org_with_members(2)
    manager = make_key(account=org, management=True)
    gid = create(client, manager)["id"]
    body = {"member_user_ids": [_public(alice), _public(bob)]}
    validate_request("/guardrails/{id}/assignments/members", "post", body)
    response = call(client, "POST", f"/guardrails/{gid}/assignments/members", manager, body)
    assert response.json() == {"assigned_count": 2}
    validate_response("/guardrails/{id}/assignments/members", "post", 200, response.json())
    listed = call(client, "GET", f"/guardrails/{gid}/assignments/members", manager).json()
    validate_response("/guardrails/{id}/assignments/members", "get", 200, listed)
    assert {a["user_id"] for a in listed["data"]} == set(body["member_user_ids"])
    assert all(a["organization_id"] == org.public_id for a in listed["data"])
    everything = call(client, "GET", "/guardrails/assignments/members", manager).json()
    validate_response("/guardrails/assignments/members", "get", 200, everything)
    assert everything["total_count"] == 2

    stranger = make_account(credits="0")
    assert_error(
        call(client, "POST", f"/guardrails/{gid}/assignments/members", manager, {"member_user_ids": [stranger.public_id]}),
        404,
    )
    response = call(
        client, "POST", f"/guardrails/{gid}/assignments/members/remove", manager, {"member_user_ids": [_public(bob)]}
    )
    assert response.json() == {"unassigned_count": 1}
    validate_response("/guardrails/{id}/assignments/members/remove", "post", 200, response.json())

    members = call(client, "GET", "/organization/members", manager)
    assert members.status_code == 200, members.content
    validate_response("/organization/members", "get", 200, members.json())
    data = members.json()
    assert data["total_count"] == 3
    roles = {m["email"]: m["role"] for m in data["data"]}
    assert roles[owner.owner.email] == "org:admin" and roles[alice.email] == "org:member"
    assert call(client, "GET", "/organization/members?limit=1&offset=1", manager).json()["data"][0]["email"] in roles

    # a personal account's management key has no organization; an inference key is refused
    assert_error(call(client, "GET", "/organization/members", make_key(management=True)), 404)
    assert_error(call(client, "GET", "/organization/members", make_key(account=org)), 403)
    assert_error(call(client, "GET", "/organization/members?limit=101", manager), 400)


def test_nul_characters_and_lone_surrogates_are_400(client, manager):
    gid = create(client, manager)["id"]
    for body in ({"name": "a\u0000b"}, {"name": "n", "allowed_models": ["x\u0000"]}):
        assert_error(call(client, "POST", "/guardrails", manager, body), 400)
    assert_error(call(client, "POST", f"/guardrails/{gid}/assignments/members", manager, {"member_user_ids": ["u\u0000"]}), 400)
    assert_error(call(client, "POST", "/guardrails", manager, raw='{"name": "\\ud800"}'), 400)
