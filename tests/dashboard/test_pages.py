"""Every dashboard page: renders for its owner, is scoped to the account (another account's ids are 404),
answers bad input with a message or a 400 (never a 500, nothing saved), and requires CSRF on posts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from accounts.models import Account, ApiKey, ProviderKey
from accounts.services import provider_key_create
from activity.models import Generation
from billing.models import LedgerEntry
from billing.selectors import ledger_drift
from routing.models import Provider
from tests.dashboard.helpers import PASSWORD, settle, signed_in_user
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = "1e999999"


@pytest.fixture
def owner(client, catalog):
    user, account = signed_in_user(client)
    key = make_key(account=account, name="owner key").key
    gen_id = settle(account=account, api_key=key, cost=5000, tokens_prompt=11, tokens_completion=22)
    provider = Provider.objects.order_by("slug").first()
    byok = provider_key_create(account=account, provider=provider, key="sk-owner-secret-1234")
    return {"user": user, "account": account, "key": key, "gen": gen_id, "byok": byok, "client": client}


@pytest.fixture
def intruder(catalog):
    """Another signed-in user with their own key, generation and provider key."""
    client = Client()
    user, account = signed_in_user(client)
    key = make_key(account=account, name="intruder key").key
    gen_id = settle(account=account, api_key=key, cost=7)
    provider = Provider.objects.order_by("slug").first()
    byok = provider_key_create(account=account, provider=provider, key="sk-intruder-secret-9999")
    return {"client": client, "account": account, "key": key, "gen": gen_id, "byok": byok}


PAGES = ["/", "/activity", "/activity?period=1h&group=key", "/activity?period=1y&group=provider",
         "/activity?period=1mo&group=model", "/activity/log", "/activity/export.csv", "/settings/keys",
         "/settings/privacy", "/settings/byok", "/settings/account", "/settings/credits", "/models",
         "/models/openai/gpt-4o-mini"]


def test_every_page_renders_for_its_owner(owner):
    client = owner["client"]
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
    assert client.get(f"/activity/generations/{owner['gen']}").status_code == 200
    assert client.get(f"/settings/keys/{owner['key'].hash}").status_code == 200
    assert client.get(f"/settings/keys/{owner['key'].hash}/delete").status_code == 200
    page = client.get("/activity").content.decode()
    assert owner["gen"] in page and "owner key" in page


def test_signed_out_visitors_see_the_landing_page_and_are_sent_to_sign_in(client, catalog):
    landing = client.get("/")
    assert landing.status_code == 200 and b"Sign up" in landing.content and b"curl" in landing.content
    for url in ["/activity", "/settings/keys", "/settings/privacy", "/settings/byok", "/settings/account"]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    assert client.get("/models").status_code == 200


def test_another_accounts_ids_are_404_on_every_page(owner, intruder):
    client = owner["client"]
    theirs = intruder
    gets = [
        f"/activity/generations/{theirs['gen']}",
        f"/settings/keys/{theirs['key'].hash}",
        f"/settings/keys/{theirs['key'].hash}/delete",
        f"/activity?key={theirs['key'].hash}",
        f"/activity/export.csv?key={theirs['key'].hash}",
        f"/activity/log?key={theirs['key'].hash}",
    ]
    for url in gets:
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"<html" in response.content and b"Not found" in response.content, url
    posts = [
        (f"/settings/keys/{theirs['key'].hash}", {"name": "pwned"}),
        (f"/settings/keys/{theirs['key'].hash}/toggle", {}),
        (f"/settings/keys/{theirs['key'].hash}/delete", {}),
        (f"/settings/byok/{theirs['byok'].id}", {"action": "disable"}),
        (f"/settings/byok/{theirs['byok'].id}/delete", {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    key = ApiKey.objects.get(id=theirs["key"].id)
    assert key.name == "intruder key" and not key.disabled
    byok = ProviderKey.objects.get(id=theirs["byok"].id)
    assert byok.deleted_at is None and not byok.disabled
    # The intruder's generation never shows in the owner's log.
    assert theirs["gen"] not in client.get("/activity").content.decode()
    assert theirs["gen"] not in client.get("/activity/log").content.decode()


def test_unknown_ids_and_pages_are_html_404_but_api_stays_json(owner):
    client = owner["client"]
    for url in ["/activity/generations/gen-1-nope", "/settings/keys/" + "0" * 64, "/settings/byok/not-a-uuid/delete",
                "/models/nobody/nothing", "/no/such/page", "/activity/generations/gen-%00", "/settings/keys/%00",
                "/models/a%00/b"]:
        response = client.get(url) if "delete" not in url else client.post(url)
        assert response.status_code == 404, url
        assert response["Content-Type"].startswith("text/html"), url
    api = client.get("/api/v1/no-such-endpoint")
    assert api.status_code == 404 and api.json()["error"]["code"] == 404


@pytest.mark.parametrize(
    "query",
    ["period=2h", "group=colour", "since=yesterday", "since=2026-05-01&until=2026-04-01", "until=99999-01-01",
     "status=weird", "before=garbage", "before=2026-01-01T00:00:00~", "model=" + "m" * 500, "model=a%00b",
     "provider=%00", "before=2026-01-01T00:00:00%2B00:00~gen%00x"],
)
def test_bad_activity_queries_are_400_with_a_message(owner, query):
    response = owner["client"].get(f"/activity?{query}")
    assert response.status_code == 400
    assert b"Bad request" in response.content
    if not query.startswith("before"):  # the export has no paging
        assert owner["client"].get(f"/activity/export.csv?{query}").status_code == 400


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": ""}, "Give the key a name"),
        ({"name": "x" * 201}, "at most 200"),
        ({"name": "k", "limit": "-1"}, "must not be negative"),
        ({"name": "k", "limit": HUGE}, "credit limit"),
        ({"name": "k", "limit": "abc"}, "amount in USD"),
        ({"name": "k", "limit": "NaN"}, "credit limit"),
        ({"name": "k", "limit": "5", "limit_reset": "hourly"}, "limit reset"),
        ({"name": "k", "limit_reset": "daily"}, "needs a credit limit"),
        ({"name": "k", "expires_at": "2001-01-01"}, "in the future"),
        ({"name": "k", "expires_at": "soon"}, "must be a date"),
        ({"name": "nul\x00name"}, "NUL character"),
    ],
)
def test_bad_key_forms_show_a_message_and_save_nothing(owner, fields, message):
    before = ApiKey.objects.count()
    response = owner["client"].post("/settings/keys", fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert ApiKey.objects.count() == before
    edit = owner["client"].post(f"/settings/keys/{owner['key'].hash}", fields)
    assert edit.status_code == 400
    key = ApiKey.objects.get(id=owner["key"].id)
    assert key.name == "owner key" and key.limit is None


def test_keys_page_creates_shows_once_edits_disables_and_deletes(owner):
    client = owner["client"]
    response = client.post("/settings/keys", {"name": "ci", "limit": "2.50", "limit_reset": "weekly",
                                              "include_byok_in_limit": "on", "expires_at": "2099-01-01"})
    assert response.status_code == 200
    key = ApiKey.objects.get(account=owner["account"], name="ci")
    raw = response.context["new_raw"]
    assert raw.startswith("sk-or-v1-") and raw in response.content.decode()
    assert (key.limit, key.limit_reset, key.include_byok_in_limit) == (2_500_000_000, "weekly", True)
    assert key.expires_at == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    assert raw not in client.get("/settings/keys").content.decode()  # shown once
    client.post(f"/settings/keys/{key.hash}", {"name": "ci-2", "limit": "", "limit_reset": ""})
    key.refresh_from_db()
    assert (key.name, key.limit, key.limit_reset, key.include_byok_in_limit) == ("ci-2", None, None, False)
    client.post(f"/settings/keys/{key.hash}/toggle")
    key.refresh_from_db()
    assert key.disabled
    client.post(f"/settings/keys/{key.hash}/delete")
    assert not ApiKey.objects.filter(id=key.id).exists()
    management = client.post("/settings/keys", {"name": "ops", "kind": "management"})
    assert management.status_code == 200 and ApiKey.objects.get(name="ops").is_management


def test_posts_need_csrf(owner):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner["user"])
    for url, data in [("/settings/keys", {"name": "x"}), ("/settings/privacy", {"zdr_only": "on"}),
                      ("/settings/byok", {"provider": "openai", "key": "sk-x"}), ("/settings/account/delete", {"password": PASSWORD}),
                      (f"/settings/keys/{owner['key'].hash}/toggle", {}), ("/settings/account/sessions", {})]:
        assert strict.post(url, data).status_code == 403, url
    assert not ApiKey.objects.filter(name="x").exists()
    assert Account.objects.get(id=owner["account"].id).closed_at is None


def test_privacy_page_saves_and_refuses_bad_provider_lists(owner):
    client = owner["client"]
    slugs = list(Provider.objects.order_by("slug").values_list("slug", flat=True)[:2])
    assert client.post("/settings/privacy", {"allowed_providers": ["no-such-provider"]}).status_code == 400
    assert client.post("/settings/privacy", {"allowed_providers": slugs[:1], "ignored_providers": slugs[:1]}).status_code == 400
    account = Account.objects.get(id=owner["account"].id)
    assert account.allowed_providers == [] and account.allow_training_paid
    response = client.post("/settings/privacy", {"zdr_only": "on", "allow_training_free": "on", "ignored_providers": slugs[1:2],
                                                 "allow_training_discount": "on"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.zdr_only and not account.allow_training_paid and account.allow_training_free
    assert account.ignored_providers == slugs[1:2] and account.allow_training_discount


def test_byok_page_adds_reorders_and_deletes(owner):
    client = owner["client"]
    provider = owner["byok"].provider
    assert client.post("/settings/byok", {"provider": "nope", "key": "sk-x"}).status_code == 400
    assert client.post("/settings/byok", {"provider": provider.slug, "key": "  "}).status_code == 400
    assert client.post("/settings/byok", {"provider": provider.slug, "key": "sk-x", "mode": "sometimes"}).status_code == 400
    assert client.post("/settings/byok", {"provider": provider.slug, "key": "sk-\x00x"}).status_code == 400
    assert client.post("/settings/byok", {"provider": provider.slug, "key": "sk-second-key-5678", "name": "second"}).status_code == 302
    second = ProviderKey.objects.get(name="second")
    assert "sk-second-key-5678" not in client.get("/settings/byok").content.decode()
    client.post(f"/settings/byok/{second.id}", {"action": "up"})
    second.refresh_from_db()
    assert second.sort_order == 0
    client.post(f"/settings/byok/{second.id}", {"action": "always"})
    client.post(f"/settings/byok/{second.id}", {"action": "explode"})
    second.refresh_from_db()
    assert second.always_use
    client.post(f"/settings/byok/{second.id}/delete")
    second.refresh_from_db()
    assert second.deleted_at is not None and second.encrypted_key == ""


def test_delete_account_needs_the_password_then_revokes_and_forfeits(owner):
    client = owner["client"]
    account = owner["account"]
    assert client.post("/settings/account/delete", {"password": "wrong", "confirm": "on"}).status_code == 400
    assert client.post("/settings/account/delete", {"password": PASSWORD}).status_code == 400
    assert Account.objects.get(id=account.id).closed_at is None
    response = client.post("/settings/account/delete", {"password": PASSWORD, "confirm": "on"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.closed_at is not None and account.balance == 0
    assert not ApiKey.objects.filter(account=account, disabled=False).exists()
    assert not ProviderKey.objects.filter(account=account, deleted_at__isnull=True).exists()
    forfeit = LedgerEntry.objects.get(account=account, idempotency_key__startswith="forfeit:")
    assert forfeit.amount < 0 and forfeit.kind == LedgerEntry.Kind.ADJUSTMENT
    assert ledger_drift(account_id=account.id) == []
    assert Generation.objects.filter(account=account).exists()  # kept
    owner["user"].refresh_from_db()
    assert not owner["user"].is_active
    assert client.get("/settings/keys").status_code == 302  # signed out


def test_models_page_filters_sort_and_bad_filters(owner):
    client = owner["client"]
    assert b"openai/gpt-4o-mini" in client.get("/models?q=gpt-4o-mini").content
    assert b"openai/gpt-4o-mini" not in client.get("/models?q=zzzz-no-model").content
    for query in ["sort=price", "max_price=-1", f"max_price={HUGE}", "max_price=abc", "context=7", "modality=smell",
                  "params=teleport", "output=video"]:
        assert client.get(f"/models?{query}").status_code == 400, query
    for sort in ["newest", "pricing-low-to-high", "pricing-high-to-low", "context-high-to-low", "throughput-high-to-low"]:
        assert client.get(f"/models?sort={sort}&free=on&params=tools&context=16000").status_code == 200
    page = client.get("/models/openai/gpt-4o-mini").content.decode()
    assert "Providers" in page and "Uptime" in page and "chat/completions" in page


def test_the_model_page_marks_endpoints_under_a_declared_outage(owner):
    from routing.models import Endpoint
    from routing.services import catalog_outage_set

    client = owner["client"]
    endpoints = list(Endpoint.objects.filter(model__slug="openai/gpt-4o-mini", active=True).select_related("provider"))
    assert endpoints
    page = client.get("/models/openai/gpt-4o-mini").content.decode()
    assert "down (declared outage)" not in page
    catalog_outage_set(endpoint=endpoints[0], down=True)
    page = client.get("/models/openai/gpt-4o-mini").content.decode()
    row = page.split(f'data-endpoint="{endpoints[0].tag}"', 1)[1].split("</tr>", 1)[0]
    assert "down (declared outage)" in row
    assert page.count("down (declared outage)") == 1
    catalog_outage_set(endpoint=endpoints[0], down=False)
    catalog_outage_set(provider=endpoints[0].provider, down=True)
    page = client.get("/models/openai/gpt-4o-mini").content.decode()
    assert page.count("down (declared outage)") == sum(e.provider_id == endpoints[0].provider_id for e in endpoints)
