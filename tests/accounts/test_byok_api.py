"""The management API /byok: CRUD, masking, encryption at rest, auth and account isolation."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from accounts import secrets
from accounts.models import ProviderKey
from accounts.presenters import workspace_id
from routing.models import Provider
from tests.factories import KeyBundle, make_key
from tests.management_api import assert_error, call
from tests.openapi import validate_request, validate_response

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyzAbCd"
ANTHROPIC_KEY = "sk-ant-api03-zyxwvutsrqponmlkjihgfedcba9876543210WXyz"
FORBIDDEN = "Only management keys can perform this operation"


@pytest.fixture(autouse=True)
def providers():
    for slug, name in (("openai", "OpenAI"), ("anthropic", "Anthropic"), ("x-ai", "xAI")):
        Provider.objects.get_or_create(slug=slug, defaults={"name": name})


@pytest.fixture
def manager() -> KeyBundle:
    return make_key(management=True, name="manager")


def create(client, manager: KeyBundle, **body) -> dict:
    body = {"provider": "openai", "key": OPENAI_KEY, **body}
    response = call(client, "POST", "/byok", manager, body)
    assert response.status_code == 201, response.content
    validate_response("/byok", "post", 201, response.json())
    return response.json()["data"]


def raw_row(key_id: str) -> dict:
    """The row as stored, read with SQL (no model decoding in between)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM accounts_providerkey WHERE id = %s",
            [uuid.UUID(key_id).hex if connection.vendor == "sqlite" else key_id],
        )
        columns = [c[0] for c in cursor.description]
        row = cursor.fetchone()
    assert row is not None
    return dict(zip(columns, row, strict=True))


# --- create / read ----------------------------------------------------------------------------


def test_create_returns_the_masked_credential_and_stores_only_ciphertext(client, manager):
    request = {"provider": "openai", "key": OPENAI_KEY, "name": "Production OpenAI Key"}
    validate_request("/byok", "post", request)
    response = call(client, "POST", "/byok", manager, request)
    assert response.status_code == 201, response.content
    body = response.json()
    validate_response("/byok", "post", 201, body)
    data = body["data"]
    assert data["provider"] == "openai" and data["name"] == "Production OpenAI Key"
    assert data["label"] == "sk-...AbCd"
    assert data["disabled"] is False and data["is_fallback"] is False and data["always_use"] is False
    assert (
        data["allowed_models"] is None and data["allowed_api_key_hashes"] is None and data["allowed_user_ids"] is None
    )
    assert data["sort_order"] == 0
    assert data["workspace_id"] == workspace_id(manager.account)
    assert data["created_at"].endswith("Z")
    assert OPENAI_KEY not in response.content.decode() and OPENAI_KEY[8:-4] not in response.content.decode()

    row = raw_row(data["id"])
    assert all(OPENAI_KEY not in str(value) for value in row.values()), "the plaintext key is in the database"
    assert row["encrypted_key"].startswith("gAAAAA")  # a Fernet token
    assert secrets.decrypt(row["encrypted_key"]) == OPENAI_KEY
    assert row["label"] == "sk-...AbCd" and row["account_id"] == manager.account.id


def test_get_and_list_show_the_label_never_the_key(client, manager):
    first = create(client, manager, name="one")
    second = create(client, manager, provider="anthropic", key=ANTHROPIC_KEY, is_fallback=True)

    response = call(client, "GET", f"/byok/{first['id']}", manager)
    assert response.status_code == 200, response.content
    validate_response("/byok/{id}", "get", 200, response.json())
    assert response.json()["data"] == first

    response = call(client, "GET", "/byok", manager)
    assert response.status_code == 200, response.content
    body = response.json()
    validate_response("/byok", "get", 200, body)
    assert body["total_count"] == 2
    assert [k["id"] for k in body["data"]] == [second["id"], first["id"]]  # by provider slug
    assert body["data"][0]["label"] == "sk-...WXyz" and body["data"][0]["is_fallback"] is True
    text = response.content.decode()
    assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text
    assert "encrypted" not in text and "gAAAAA" not in text


def test_list_filters_by_provider_and_pages(client, manager):
    ids = [create(client, manager, name=f"openai {i}")["id"] for i in range(3)]
    create(client, manager, provider="anthropic", key=ANTHROPIC_KEY)

    body = call(client, "GET", "/byok?provider=openai", manager).json()
    validate_response("/byok", "get", 200, body)
    assert body["total_count"] == 3 and [k["id"] for k in body["data"]] == ids
    assert [k["sort_order"] for k in body["data"]] == [0, 1, 2]

    body = call(client, "GET", "/byok?provider=openai&offset=1&limit=1", manager).json()
    assert body["total_count"] == 3 and [k["id"] for k in body["data"]] == ids[1:2]
    body = call(client, "GET", "/byok?offset=10", manager).json()
    assert body == {"data": [], "total_count": 4}
    body = call(client, "GET", f"/byok?workspace_id={workspace_id(manager.account)}", manager).json()
    assert body["total_count"] == 4

    for query in (
        "limit=0",
        "limit=101",
        "limit=x",
        "offset=-1",
        "offset=%C2%B2",
        "provider=nope",
        "workspace_id=" + str(uuid.uuid4()),
    ):
        response = call(client, "GET", f"/byok?{query}", manager)
        assert_error(response, 400)
        validate_response("/byok", "get", 400, response.json())


def test_spec_provider_slug_xai_maps_to_the_catalog_provider(client, manager):
    data = create(client, manager, provider="xai", key="xai-0123456789abcdefghijklmnopQRst")
    assert data["provider"] == "xai" and data["label"] == "xai...QRst"
    assert ProviderKey.objects.get(id=data["id"]).provider.slug == "x-ai"
    assert call(client, "GET", "/byok?provider=xai", manager).json()["total_count"] == 1


def test_create_accepts_every_setting(client, manager):
    inference = make_key(account=manager.account)
    data = create(
        client,
        manager,
        name=None,
        disabled=True,
        is_fallback=True,
        always_use=True,
        allowed_models=["openai/gpt-4o", "openai/gpt-4o"],
        allowed_api_key_hashes=[inference.key.hash],
        allowed_user_ids=["user_1"],
        workspace_id=workspace_id(manager.account),
    )
    assert data["name"] is None and data["disabled"] is True and data["is_fallback"] is True
    assert data["always_use"] is True
    assert data["allowed_models"] == ["openai/gpt-4o"]
    assert data["allowed_api_key_hashes"] == [inference.key.hash] and data["allowed_user_ids"] == ["user_1"]


# --- update / delete --------------------------------------------------------------------------


def test_patch_changes_settings_and_rotates_the_key(client, manager):
    data = create(client, manager)
    token_before = raw_row(data["id"])["encrypted_key"]
    request = {"name": "Updated OpenAI Key", "disabled": True, "is_fallback": True, "always_use": True}
    validate_request("/byok/{id}", "patch", {k: v for k, v in request.items() if k != "always_use"})
    response = call(client, "PATCH", f"/byok/{data['id']}", manager, request)
    assert response.status_code == 200, response.content
    validate_response("/byok/{id}", "patch", 200, response.json())
    updated = response.json()["data"]
    assert updated["name"] == "Updated OpenAI Key" and updated["disabled"] is True
    assert updated["is_fallback"] is True and updated["always_use"] is True
    assert updated["label"] == data["label"] and updated["id"] == data["id"]
    assert raw_row(data["id"])["encrypted_key"] == token_before  # settings only: the key is untouched
    assert ProviderKey.objects.get(id=data["id"]).updated_at is not None

    new_key = "sk-proj-rotated-9876543210zyxwvutsrqponmlkjiHgFe"
    response = call(client, "PATCH", f"/byok/{data['id']}", manager, {"key": new_key, "name": None})
    assert response.status_code == 200, response.content
    rotated = response.json()["data"]
    assert rotated["label"] == "sk-...HgFe" and rotated["name"] is None and rotated["disabled"] is True
    assert new_key not in response.content.decode()
    row = raw_row(data["id"])
    assert row["encrypted_key"] != token_before and secrets.decrypt(row["encrypted_key"]) == new_key
    assert all(new_key not in str(value) and OPENAI_KEY not in str(value) for value in row.values())

    response = call(client, "PATCH", f"/byok/{data['id']}", manager, {})
    assert response.status_code == 200 and response.json()["data"] == rotated


def test_delete_wipes_the_key_material_and_hides_the_credential(client, manager):
    data = create(client, manager)
    other = create(client, manager, name="stays")
    response = call(client, "DELETE", f"/byok/{data['id']}", manager)
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": True}
    validate_response("/byok/{id}", "delete", 200, response.json())

    row = raw_row(data["id"])
    assert row["encrypted_key"] == "" and row["deleted_at"] is not None
    for method in ("GET", "PATCH", "DELETE"):
        response = call(client, method, f"/byok/{data['id']}", manager, {} if method == "PATCH" else None)
        assert_error(response, 404)
        validate_response("/byok/{id}", method.lower(), 404, response.json())
    body = call(client, "GET", "/byok", manager).json()
    assert body["total_count"] == 1 and [k["id"] for k in body["data"]] == [other["id"]]
    # A new key for the provider goes after the live ones.
    assert create(client, manager)["sort_order"] == 2


# --- auth and isolation -----------------------------------------------------------------------


def test_only_management_keys_may_use_byok(client, manager):
    data = create(client, manager)
    inference = make_key(account=manager.account)
    response = call(client, "POST", "/byok", inference, {"provider": "openai", "key": OPENAI_KEY})
    assert_error(response, 403, FORBIDDEN)
    validate_response("/byok", "post", 403, response.json())
    for method, path in (
        ("GET", "/byok"),
        ("GET", f"/byok/{data['id']}"),
        ("PATCH", f"/byok/{data['id']}"),
        ("DELETE", f"/byok/{data['id']}"),
    ):
        response = call(client, method, path, inference, {"disabled": True} if method == "PATCH" else None)
        assert_error(response, 403, FORBIDDEN)
    for method, path in (
        ("GET", "/byok"),
        ("POST", "/byok"),
        ("GET", f"/byok/{data['id']}"),
        ("DELETE", f"/byok/{data['id']}"),
    ):
        response = call(
            client, method, path, None, {"provider": "openai", "key": OPENAI_KEY} if method == "POST" else None
        )
        assert_error(response, 401)
        validate_response(path if path == "/byok" else "/byok/{id}", method.lower(), 401, response.json())
    unknown = KeyBundle(raw="sk-or-v1-" + "0" * 64, key=None, account=None)
    assert_error(call(client, "GET", "/byok", unknown), 401, "User not found.")
    stored = ProviderKey.objects.get(id=data["id"])
    assert stored.disabled is False and stored.deleted_at is None


def test_another_accounts_credential_is_not_found(client, manager):
    theirs = create(client, make_key(management=True))
    before = raw_row(theirs["id"])
    for method in ("GET", "PATCH", "DELETE"):
        response = call(
            client, method, f"/byok/{theirs['id']}", manager, {"disabled": True} if method == "PATCH" else None
        )
        assert_error(response, 404)
    assert call(client, "GET", "/byok", manager).json() == {"data": [], "total_count": 0}
    assert raw_row(theirs["id"]) == before
    for bad_id in ("not-a-uuid", str(uuid.uuid4())):
        assert_error(call(client, "GET", f"/byok/{bad_id}", manager), 404)


def test_allowed_api_key_hashes_must_be_the_accounts_own_keys(client, manager):
    stranger = make_key()
    response = call(
        client,
        "POST",
        "/byok",
        manager,
        {"provider": "openai", "key": OPENAI_KEY, "allowed_api_key_hashes": [stranger.key.hash]},
    )
    assert_error(response, 400)
    assert not ProviderKey.objects.exists()


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"key": OPENAI_KEY},
        {"provider": "nope", "key": OPENAI_KEY},
        {"provider": 7, "key": OPENAI_KEY},
        {"provider": "openai"},
        {"provider": "openai", "key": ""},
        {"provider": "openai", "key": "   "},
        {"provider": "openai", "key": 12345},
        {"provider": "openai", "key": "k" * 20_000},
        {"provider": "openai", "key": OPENAI_KEY, "name": 5},
        {"provider": "openai", "key": OPENAI_KEY, "name": "n" * 256},
        {"provider": "openai", "key": OPENAI_KEY, "disabled": "yes"},
        {"provider": "openai", "key": OPENAI_KEY, "is_fallback": 1},
        {"provider": "openai", "key": OPENAI_KEY, "always_use": None},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_models": "openai/gpt-4o"},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_models": [1]},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_models": ["m"] * 101},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_user_ids": [""]},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_api_key_hashes": []},
        {"provider": "openai", "key": OPENAI_KEY, "allowed_api_key_hashes": ["ABC"]},
        {"provider": "openai", "key": OPENAI_KEY, "workspace_id": str(uuid.uuid4())},
        {"provider": "openai", "key": OPENAI_KEY, "workspace_id": 3},
        ["provider", "openai"],
    ],
)
def test_create_rejects_invalid_bodies(client, manager, body):
    response = call(client, "POST", "/byok", manager, body)
    message = assert_error(response, 400)
    validate_response("/byok", "post", 400, response.json())
    assert OPENAI_KEY not in message
    assert not ProviderKey.objects.exists()


def test_create_rejects_malformed_json(client, manager):
    assert_error(call(client, "POST", "/byok", manager, raw="{not json"), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"key": ""},
        {"key": None},
        {"provider": "anthropic"},
        {"name": ["x"]},
        {"disabled": "false"},
        {"allowed_api_key_hashes": []},
        {"allowed_models": {"a": 1}},
        "disabled",
    ],
)
def test_patch_rejects_invalid_bodies(client, manager, body):
    data = create(client, manager)
    before = raw_row(data["id"])
    response = call(client, "PATCH", f"/byok/{data['id']}", manager, body)
    assert_error(response, 400)
    validate_response("/byok/{id}", "patch", 400, response.json())
    assert raw_row(data["id"]) == before
