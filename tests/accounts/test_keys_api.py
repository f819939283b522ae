"""GET /key, the management API /keys, and every key-scoped endpoint's account isolation."""

from __future__ import annotations

import datetime as dt
import hashlib

import httpx
import pytest

from accounts.models import ApiKey
from billing.models import LedgerEntry
from billing.money import nanos_to_usd_number, usd_to_nanos
from billing.services import credits_grant
from billing.settlement import settlement_flush
from tests.factories import KeyBundle, make_key
from tests.openapi import validate_response
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

FORBIDDEN = "Only management keys can perform this operation"


def call(server, method: str, path: str, auth: KeyBundle | str | None = None, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if isinstance(auth, KeyBundle):
        headers.update(auth.headers)
    elif isinstance(auth, str):
        headers["Authorization"] = f"Bearer {auth}"
    return httpx.request(method, f"{server.api}{path}", headers=headers, timeout=30, **kwargs)


def raw_bundle(raw: str) -> KeyBundle:
    return KeyBundle(raw=raw, key=ApiKey.objects.get(hash=hashlib.sha256(raw.encode()).hexdigest()), account=None)


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "user_id"}
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message
    return body["error"]


def chat_ok(server, bundle: KeyBundle, slug: str) -> dict:
    response = chat(server, bundle, model=slug, max_tokens=8)
    assert response.status_code == 200, response.text
    return response.json()


# --- GET /key ----------------------------------------------------------------------------------


def test_current_key_for_an_inference_key_reflects_usage(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    response = call(gateway, "GET", "/key", bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/key", "get", 200, body)
    data = body["data"]
    assert data["label"] == bundle.key.label and bundle.raw not in response.text
    assert data["limit"] is None and data["limit_remaining"] is None and data["limit_reset"] is None
    assert data["usage"] == data["usage_daily"] == data["usage_weekly"] == data["usage_monthly"] == 0
    assert data["is_management_key"] is False and data["is_provisioning_key"] is False
    assert data["is_free_tier"] is True
    assert data["creator_user_id"] == bundle.account.public_id
    assert data["rate_limit"]["requests"] == -1

    cost = chat_ok(gateway, bundle, slug)["usage"]["cost"]
    assert cost > 0
    settlement_flush()
    data = call(gateway, "GET", "/key", bundle).json()["data"]
    assert data["usage"] == data["usage_daily"] == data["usage_weekly"] == data["usage_monthly"] == cost
    assert data["byok_usage"] == 0


def test_current_key_with_a_limit_shows_what_remains(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5", limit="1", limit_reset="daily")
    data = call(gateway, "GET", "/key", bundle).json()["data"]
    assert data["limit"] == 1 and data["limit_remaining"] == 1 and data["limit_reset"] == "daily"
    cost = chat_ok(gateway, bundle, slug)["usage"]["cost"]
    settlement_flush()
    body = call(gateway, "GET", "/key", bundle).json()
    validate_response("/key", "get", 200, body)
    data = body["data"]
    assert data["usage_daily"] == cost
    assert data["limit_remaining"] == nanos_to_usd_number(usd_to_nanos("1") - usd_to_nanos(str(cost)))


def test_current_key_for_a_management_key(gateway):
    bundle = make_key(management=True)
    body = call(gateway, "GET", "/key", bundle).json()
    validate_response("/key", "get", 200, body)
    assert body["data"]["is_management_key"] is True
    assert body["data"]["is_provisioning_key"] is True


def test_is_free_tier_turns_false_after_a_purchase(gateway):
    bundle = make_key(credits="1")
    assert call(gateway, "GET", "/key", bundle).json()["data"]["is_free_tier"] is True
    credits_grant(
        account=bundle.account, amount=usd_to_nanos("5"), idempotency_key="p1", kind=LedgerEntry.Kind.PURCHASE
    )
    assert call(gateway, "GET", "/key", bundle).json()["data"]["is_free_tier"] is False


def test_legacy_auth_key_alias(gateway):
    bundle = make_key()
    response = call(gateway, "GET", "/auth/key", bundle)
    assert response.status_code == 200 and response.json()["data"]["label"] == bundle.key.label


# --- /keys CRUD --------------------------------------------------------------------------------


def test_keys_crud_lifecycle(gateway):
    slug, _ = multi_provider_model()
    manager = make_key(credits="5", management=True)

    response = call(
        gateway,
        "POST",
        "/keys",
        manager,
        json={"name": "  CI key  ", "limit": 2.5, "limit_reset": "weekly", "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    validate_response("/keys", "post", 201, body)
    raw = body["key"]
    assert raw.startswith("sk-or-v1-") and len(raw) == len("sk-or-v1-") + 64
    data = body["data"]
    key_hash = data["hash"]
    assert key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert data["name"] == "CI key" and data["disabled"] is False
    assert data["limit"] == 2.5 and data["limit_remaining"] == 2.5 and data["limit_reset"] == "weekly"
    assert data["expires_at"] == "2099-01-01T00:00:00Z"
    assert data["label"].startswith("sk-or-v1-") and raw not in data["label"]
    assert ApiKey.objects.get(hash=key_hash).account_id == manager.account.id
    assert not ApiKey.objects.filter(hash=raw).exists()  # only the hash is stored

    # The new key works at once.
    created = raw_bundle(raw)
    chat_ok(gateway, created, slug)

    # It is listed and readable, never again with its plaintext.
    listed = call(gateway, "GET", "/keys", manager)
    assert listed.status_code == 200
    validate_response("/keys", "get", 200, listed.json())
    assert [k["hash"] for k in listed.json()["data"]] == [key_hash]
    assert raw not in listed.text
    fetched = call(gateway, "GET", f"/keys/{key_hash}", manager)
    assert fetched.status_code == 200
    validate_response("/keys/{hash}", "get", 200, fetched.json())
    assert fetched.json()["data"]["hash"] == key_hash and raw not in fetched.text
    assert call(gateway, "GET", f"/keys/{key_hash.upper()}", manager).status_code == 200

    # Rename and disable: the key is refused at once, and hidden from the default list.
    patched = call(gateway, "PATCH", f"/keys/{key_hash}", manager, json={"name": "renamed", "disabled": True})
    assert patched.status_code == 200, patched.text
    validate_response("/keys/{hash}", "patch", 200, patched.json())
    assert patched.json()["data"]["name"] == "renamed" and patched.json()["data"]["disabled"] is True
    assert patched.json()["data"]["updated_at"] is not None
    assert_error(chat(gateway, created, model=slug, max_tokens=8), 401)
    assert_error(call(gateway, "GET", "/key", created), 401)
    assert call(gateway, "GET", "/keys", manager).json()["data"] == []
    with_disabled = call(gateway, "GET", "/keys", manager, params={"include_disabled": "true"}).json()["data"]
    assert [(k["hash"], k["disabled"]) for k in with_disabled] == [(key_hash, True)]

    # Re-enable, then delete: gone for good.
    assert call(gateway, "PATCH", f"/keys/{key_hash}", manager, json={"disabled": False}).status_code == 200
    chat_ok(gateway, created, slug)
    deleted = call(gateway, "DELETE", f"/keys/{key_hash}", manager)
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": True}
    validate_response("/keys/{hash}", "delete", 200, deleted.json())
    assert_error(chat(gateway, created, model=slug, max_tokens=8), 401, "User not found.")
    assert_error(call(gateway, "GET", f"/keys/{key_hash}", manager), 404)
    assert_error(call(gateway, "DELETE", f"/keys/{key_hash}", manager), 404)
    assert call(gateway, "GET", "/keys", manager, params={"include_disabled": "true"}).json()["data"] == []


def test_keys_list_shows_usage_and_last_use(gateway):
    slug, _ = multi_provider_model()
    manager = make_key(credits="5", management=True)
    worker = make_key(account=manager.account, name="worker")
    idle = make_key(account=manager.account, name="idle")
    cost = chat_ok(gateway, worker, slug)["usage"]["cost"]
    settlement_flush()
    body = call(gateway, "GET", "/keys", manager).json()
    validate_response("/keys", "get", 200, body)
    by_hash = {k["hash"]: k for k in body["data"]}
    assert set(by_hash) == {worker.key.hash, idle.key.hash}  # management keys are not listed
    assert by_hash[worker.key.hash]["usage"] == cost
    assert by_hash[idle.key.hash]["usage"] == 0
    assert by_hash[worker.key.hash]["last_used_at"] is not None
    assert by_hash[idle.key.hash]["last_used_at"] is None


def test_limit_set_through_patch_is_enforced(gateway):
    slug, _ = multi_provider_model()
    manager = make_key(credits="5", management=True)
    raw = call(gateway, "POST", "/keys", manager, json={"name": "limited"}).json()["key"]
    bundle = raw_bundle(raw)
    chat_ok(gateway, bundle, slug)

    response = call(gateway, "PATCH", f"/keys/{bundle.key.hash}", manager, json={"limit": 0})
    assert response.status_code == 200 and response.json()["data"]["limit"] == 0
    assert response.json()["data"]["limit_remaining"] == 0
    error = assert_error(chat(gateway, bundle, model=slug, max_tokens=8), 402)
    assert "settings/keys" in error["message"]

    response = call(gateway, "PATCH", f"/keys/{bundle.key.hash}", manager, json={"limit": None})
    assert response.status_code == 200 and response.json()["data"]["limit"] is None
    chat_ok(gateway, bundle, slug)


def test_limit_reset_and_byok_flag_can_be_changed(gateway):
    manager = make_key(management=True)
    key = make_key(account=manager.account)
    response = call(
        gateway,
        "PATCH",
        f"/keys/{key.key.hash}",
        manager,
        json={"limit": 3, "limit_reset": "monthly", "include_byok_in_limit": True},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["limit"], data["limit_reset"], data["include_byok_in_limit"]) == (3, "monthly", True)
    key.key.refresh_from_db()
    assert key.key.limit == usd_to_nanos("3") and key.key.limit_reset == "monthly"


# --- validation --------------------------------------------------------------------------------


CREATE_INVALID = {
    "missing-name": {},
    "empty-name": {"name": ""},
    "blank-name": {"name": "   "},
    "number-name": {"name": 42},
    "negative-limit": {"name": "k", "limit": -1},
    "text-limit": {"name": "k", "limit": "lots"},
    "bad-limit-reset": {"name": "k", "limit_reset": "hourly"},
    "bad-byok-flag": {"name": "k", "include_byok_in_limit": "yes"},
    "non-utc-expiry": {"name": "k", "expires_at": "2099-01-01T00:00:00+02:00"},
    "naive-expiry": {"name": "k", "expires_at": "2099-01-01T00:00:00"},
    "unparseable-expiry": {"name": "k", "expires_at": "next tuesday"},
    "numeric-expiry": {"name": "k", "expires_at": 4102444800},
    "array-body": ["name", "k"],
}


def test_create_key_validation_is_400(gateway):
    manager = make_key(management=True)
    for case, body in CREATE_INVALID.items():
        response = call(gateway, "POST", "/keys", manager, json=body)
        assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
        assert_error(response, 400)
        validate_response("/keys", "post", 400, response.json())
    assert not ApiKey.objects.filter(account=manager.account, is_management=False).exists()


def test_create_key_with_a_non_json_body_is_400(gateway):
    manager = make_key(management=True)
    response = call(
        gateway, "POST", "/keys", manager, content=b"{name: nope", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400)
    validate_response("/keys", "post", 400, response.json())


UPDATE_INVALID = {
    "empty-name": {"name": ""},
    "text-disabled": {"disabled": "yes"},
    "negative-limit": {"limit": -5},
    "bad-limit-reset": {"limit_reset": "yearly"},
    "array-body": ["disabled"],
}


def test_update_key_validation_is_400(gateway):
    manager = make_key(management=True)
    key = make_key(account=manager.account, name="unchanged")
    for case, body in UPDATE_INVALID.items():
        response = call(gateway, "PATCH", f"/keys/{key.key.hash}", manager, json=body)
        assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
        assert_error(response, 400)
        validate_response("/keys/{hash}", "patch", 400, response.json())
    key.key.refresh_from_db()
    assert key.key.name == "unchanged" and key.key.disabled is False and key.key.limit is None


def test_offset_pages_over_the_listed_keys_only(gateway):
    """``offset`` skips keys the list shows; management keys (never listed) must not shift the page."""
    manager = make_key(management=True)
    older = make_key(account=manager.account, name="older")
    newer = make_key(account=manager.account, name="newer")
    make_key(account=manager.account, management=True, name="a newer management key")
    everything = call(gateway, "GET", "/keys", manager).json()["data"]
    assert [k["hash"] for k in everything] == [newer.key.hash, older.key.hash]
    page = call(gateway, "GET", "/keys", manager, params={"offset": "1"}).json()["data"]
    assert [k["hash"] for k in page] == [older.key.hash]
    assert call(gateway, "GET", "/keys", manager, params={"offset": "2"}).json()["data"] == []


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_absurd_limit_is_400_not_500(gateway, method):
    """A limit beyond what the database can hold (~9.2e9 USD in nano-dollars) is bad input, not a crash."""
    manager = make_key(management=True)
    key = make_key(account=manager.account, name="unchanged")
    path = "/keys" if method == "POST" else f"/keys/{key.key.hash}"
    for limit in (b"1e400", b"1e12", b"9223372037"):
        content = b'{"name": "k", "limit": ' + limit + b"}"
        response = call(gateway, method, path, manager, content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, f"limit {limit.decode()}: {response.status_code} {response.text}"
        assert_error(response, 400)
    assert ApiKey.objects.filter(account=manager.account).count() == 2
    key.key.refresh_from_db()
    assert key.key.limit is None and key.key.name == "unchanged"


def test_offset_must_be_a_number(gateway):
    manager = make_key(management=True)
    assert_error(call(gateway, "GET", "/keys", manager, params={"offset": "x"}), 400)


# --- authorization -----------------------------------------------------------------------------

MANAGEMENT_ONLY = [
    ("GET", "/keys", None),
    ("POST", "/keys", {"name": "sneaky"}),
    ("GET", "/keys/{hash}", None),
    ("PATCH", "/keys/{hash}", {"disabled": True}),
    ("DELETE", "/keys/{hash}", None),
    ("GET", "/credits", None),
    ("GET", "/activity", None),
]


def test_inference_key_on_management_routes_is_403(gateway):
    bundle = make_key()
    other = make_key(account=bundle.account, name="target")
    for method, path, body in MANAGEMENT_ONLY:
        response = call(gateway, method, path.format(hash=other.key.hash), bundle, json=body)
        assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
        assert_error(response, 403, FORBIDDEN)
        try:
            validate_response(path, method, 403, response.json())
        except KeyError:
            pass  # the spec documents no 403 body for this operation
    other.key.refresh_from_db()
    assert other.key.disabled is False and other.key.name == "target"
    assert ApiKey.objects.filter(account=bundle.account).count() == 2


NEEDS_A_KEY = [
    ("GET", "/key"),
    ("GET", "/auth/key"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("GET", "/keys/" + "a" * 64),
    ("PATCH", "/keys/" + "a" * 64),
    ("DELETE", "/keys/" + "a" * 64),
    ("GET", "/credits"),
    ("GET", "/activity"),
    ("GET", "/generation?id=gen-1700000000-abcdefgh"),
]


def test_missing_or_unknown_key_is_401(gateway):
    for method, path in NEEDS_A_KEY:
        response = call(gateway, method, path)
        assert response.status_code == 401, f"{method} {path}: {response.status_code} {response.text}"
        assert_error(response, 401, "No auth credentials found")
        assert_error(call(gateway, method, path, "sk-or-v1-" + "0" * 64), 401, "User not found.")


def test_expired_key_is_401(gateway):
    bundle = make_key()
    ApiKey.objects.filter(id=bundle.key.id).update(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert_error(call(gateway, "GET", "/key", bundle), 401)


# --- isolation between accounts ----------------------------------------------------------------


@pytest.fixture
def two_accounts(gateway):
    """Account A (with a generation) and account B, each with a management and an inference key."""
    slug, _ = multi_provider_model()
    a_manager = make_key(credits="10", management=True, name="A manager")
    a_key = make_key(account=a_manager.account, name="A key")
    b_manager = make_key(credits="3", management=True, name="B manager")
    b_key = make_key(account=b_manager.account, name="B key")
    generation_id = chat_ok(gateway, a_key, slug)["id"]
    settlement_flush()
    return a_manager, a_key, b_manager, b_key, generation_id


def test_other_accounts_keys_are_invisible(gateway, two_accounts):
    a_manager, a_key, b_manager, b_key, _ = two_accounts
    for method, body in (("GET", None), ("PATCH", {"disabled": True, "name": "pwned"}), ("DELETE", None)):
        assert_error(call(gateway, method, f"/keys/{a_key.key.hash}", b_manager, json=body), 404)
        # Nor can B reach A's management key, nor its own management key, through /keys/{hash}.
        assert_error(call(gateway, method, f"/keys/{a_manager.key.hash}", b_manager, json=body), 404)
    a_key.key.refresh_from_db()
    assert a_key.key.name == "A key" and a_key.key.disabled is False
    assert call(gateway, "GET", "/key", a_key).status_code == 200

    b_list = call(gateway, "GET", "/keys", b_manager, params={"include_disabled": "true"}).json()["data"]
    assert [k["hash"] for k in b_list] == [b_key.key.hash]
    a_list = call(gateway, "GET", "/keys", a_manager, params={"include_disabled": "true"}).json()["data"]
    assert [k["hash"] for k in a_list] == [a_key.key.hash]


def test_keys_created_by_b_belong_to_b(gateway, two_accounts):
    a_manager, _, b_manager, _, _ = two_accounts
    created = call(gateway, "POST", "/keys", b_manager, json={"name": "B2"}).json()["data"]
    assert ApiKey.objects.get(hash=created["hash"]).account_id == b_manager.account.id
    assert created["hash"] not in {k["hash"] for k in call(gateway, "GET", "/keys", a_manager).json()["data"]}
    assert_error(call(gateway, "GET", f"/keys/{created['hash']}", a_manager), 404)


def test_credits_show_only_the_callers_account(gateway, two_accounts):
    a_manager, _, b_manager, _, _ = two_accounts
    a = call(gateway, "GET", "/credits", a_manager).json()["data"]
    b = call(gateway, "GET", "/credits", b_manager).json()["data"]
    assert a["total_credits"] == 10 and a["total_usage"] > 0
    assert b == {"total_credits": 3, "total_usage": 0}


def test_generation_of_another_account_is_404(gateway, two_accounts):
    a_manager, a_key, b_manager, b_key, generation_id = two_accounts
    assert call(gateway, "GET", "/generation", a_key, params={"id": generation_id}).status_code == 200
    assert call(gateway, "GET", "/generation", a_manager, params={"id": generation_id}).status_code == 200
    error = assert_error(call(gateway, "GET", "/generation", b_key, params={"id": generation_id}), 404)
    assert generation_id in error["message"]


def test_activity_shows_only_the_callers_account(gateway, two_accounts):
    a_manager, a_key, b_manager, _, _ = two_accounts
    today = dt.datetime.now(dt.UTC).date().isoformat()
    a_rows = call(gateway, "GET", "/activity", a_manager, params={"date": today})
    assert a_rows.status_code == 200, a_rows.text
    validate_response("/activity", "get", 200, a_rows.json())
    assert len(a_rows.json()["data"]) == 1 and a_rows.json()["data"][0]["requests"] == 1
    b_rows = call(gateway, "GET", "/activity", b_manager, params={"date": today})
    assert b_rows.status_code == 200
    assert b_rows.json() == {"data": []}
    assert_error(
        call(gateway, "GET", "/activity", b_manager, params={"date": today, "api_key_hash": a_key.key.hash}), 404
    )
