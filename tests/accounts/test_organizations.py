"""Organizations on the dashboard: create, switch context, invite (single use, expiring, seat limit),
roles on every page and action, members' own keys, removal disabling keys at once, credit moves
through the ledger (exact, idempotent, one way) and the activity API's member filter."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts import guardrails as gr
from accounts import keycache
from accounts.models import Account, ApiKey, Membership, OrganizationInvite
from accounts.organizations import OrganizationError, organization_member_remove, organization_role_set
from activity.models import Generation
from billing.counters import counters
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift, ledger_sum
from billing.services import TransferError, credits_transfer
from tests.dashboard.helpers import settle, signed_in_user
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)


def _post(client, path, **data):
    return client.post(path, data)


def _create_org(client, name="Acme"):
    response = _post(client, "/settings/organization", action="create", name=name)
    assert response.status_code == 302, response.content
    return Account.objects.get(kind=Account.Kind.ORGANIZATION, name=name)


def _invite_link(email: str) -> str:
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    return re.search(r"http://testserver(/organizations/invite/\S+)", message.body).group(1)


@pytest.fixture
def team(client):
    """An admin (signed in on ``client``) with an organization, and a member (on ``member_client``)."""
    admin, admin_personal = signed_in_user(client)
    org = _create_org(client)
    member_client = Client()
    member, member_personal = signed_in_user(member_client)
    assert _post(client, "/settings/organization", action="invite", email=member.email).status_code == 302
    link = _invite_link(member.email)
    assert member_client.get(link).status_code == 200
    response = member_client.post(link)
    assert response.status_code == 302
    return {"admin": admin, "org": org, "member": member, "member_client": member_client,
            "member_personal": member_personal, "admin_personal": admin_personal}


def test_create_switch_and_context(client, team):
    org = team["org"]
    assert Membership.objects.get(account=org, user=team["admin"]).role == "admin"
    page = client.get("/settings/organization").content.decode()
    assert "Acme" in page and 'data-testid="role">admin' in page
    # the switcher is in the layout; switching to personal and back
    home = client.get("/settings/keys").content.decode()
    assert 'id="context-switcher"' in home and org.public_id in home
    client.post("/settings/context", {"account": "personal"})
    assert "Create an organization" in client.get("/settings/organization").content.decode()
    client.post("/settings/context", {"account": org.public_id})
    assert "Members (2)" in client.get("/settings/organization").content.decode()
    # another organization's id: refused, context unchanged
    stranger = Client()
    signed_in_user(stranger)
    assert stranger.post("/settings/context", {"account": org.public_id}).status_code == 403


def test_invites_work_once_expire_and_respect_the_seat_limit(client, team, settings):
    org = team["org"]
    other = Client()
    user, _ = signed_in_user(other)
    _post(client, "/settings/organization", action="invite", email=user.email)
    link = _invite_link(user.email)
    assert other.post(link).status_code == 302
    again = Client()
    signed_in_user(again)
    response = again.post(link)
    assert response.status_code == 400 and "already used" in response.content.decode()
    # a link forwarded to someone else does not work for them
    _post(client, "/settings/organization", action="invite", email="invited@example.com")
    response = again.post(_invite_link("invited@example.com"))
    assert response.status_code == 400 and "sign in with that address" in response.content.decode()
    # expired
    late = Client()
    late_user, _ = signed_in_user(late)
    _post(client, "/settings/organization", action="invite", email=late_user.email)
    OrganizationInvite.objects.filter(email=late_user.email).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = late.post(_invite_link(late_user.email))
    assert response.status_code == 400 and "expired" in response.content.decode()
    assert not Membership.objects.filter(account=org, user=late_user).exists()
    # bad tokens
    assert late.post("/organizations/invite/nonsense").status_code == 400
    # the seat limit: 3 members now
    settings.ORGANIZATION_MAX_MEMBERS = 3
    response = _post(client, "/settings/organization", action="invite", email="x@example.com")
    assert response.status_code == 400 and "already has 3 members" in response.content.decode()
    settings.ORGANIZATION_MAX_MEMBERS = 4
    _post(client, "/settings/organization", action="invite", email=late_user.email)
    link = _invite_link(late_user.email)
    settings.ORGANIZATION_MAX_MEMBERS = 3  # filled up meanwhile: accepting is refused, nothing half-done
    response = late.post(link)
    assert response.status_code == 400 and "full" in response.content.decode()
    assert Membership.objects.filter(account=org).count() == 3
    assert OrganizationInvite.objects.filter(email=late_user.email, accepted_at__isnull=False).count() == 0
    for bad in ("", "not-an-email", "a b@example.com", "x" * 250 + "@e.com"):
        assert _post(client, "/settings/organization", action="invite", email=bad).status_code == 400


def test_members_are_refused_admin_pages_and_actions(team):
    member_client, org = team["member_client"], team["org"]
    guardrail = gr.guardrail_create(account=org, name="g")
    for path in ("/settings/credits", "/settings/byok", "/settings/guardrails", f"/settings/guardrails/{guardrail.id}"):
        assert member_client.get(path).status_code == 403, path
    for path, data in (
        ("/settings/privacy", {"zdr_only": "on"}),
        ("/settings/byok", {"provider": "openai", "key": "sk-x"}),
        ("/settings/credits/auto-topup", {}),
        ("/settings/credits/card/purchase", {"amount": "10"}),
        ("/settings/guardrails", {"name": "mine"}),
        (f"/settings/guardrails/{guardrail.id}", {"action": "delete"}),
        ("/settings/keys", {"kind": "management", "name": "m"}),
        ("/settings/organization", {"action": "invite", "email": "y@example.com"}),
        ("/settings/organization", {"action": "remove", "user_id": team["admin_personal"].public_id}),
        ("/settings/organization", {"action": "role", "user_id": team["member_personal"].public_id, "role": "admin"}),
    ):
        assert member_client.post(path, data).status_code == 403, path
    assert member_client.get("/settings/privacy").status_code == 200  # members may read the settings
    assert Account.objects.get(id=org.id).zdr_only is False
    assert gr.guardrail_get(account=org, guardrail_id=guardrail.id) is not None
    assert Membership.objects.get(account=org, user=team["member"]).role == "member"


def test_members_see_and_manage_their_own_keys_admins_all(client, team):
    member_client = team["member_client"]
    member_client.post("/settings/keys", {"kind": "inference", "name": "member-key"})
    client.post("/settings/keys", {"kind": "inference", "name": "admin-key"})
    member_key = ApiKey.objects.get(name="member-key")
    admin_key = ApiKey.objects.get(name="admin-key")
    assert member_key.account_id == team["org"].id and member_key.creator_id == team["member"].id
    member_page = member_client.get("/settings/keys").content.decode()
    assert "member-key" in member_page and "admin-key" not in member_page
    admin_page = client.get("/settings/keys").content.decode()
    assert "member-key" in admin_page and "admin-key" in admin_page and team["member"].email in admin_page
    for path in (f"/settings/keys/{admin_key.hash}", f"/settings/keys/{admin_key.hash}/delete"):
        assert member_client.get(path).status_code == 404
    assert member_client.post(f"/settings/keys/{admin_key.hash}/toggle").status_code == 404
    assert member_client.post(f"/settings/keys/{member_key.hash}/toggle").status_code == 302
    assert client.post(f"/settings/keys/{member_key.hash}/toggle").status_code == 302  # admins manage all


def test_removing_a_member_disables_their_keys_and_the_last_admin_stays(client, team):
    org, member = team["org"], team["member"]
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    key = ApiKey.objects.get(name="member-key")
    keycache.cache.entries[key.hash] = (float("inf"), keycache.cache.load(key.hash))  # cached as the gateway would
    response = _post(client, "/settings/organization", action="remove", user_id=team["member_personal"].public_id)
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.disabled and key.hash not in keycache.cache.entries
    assert not Membership.objects.filter(account=org, user=member).exists()
    # the removed member's dashboard falls back to their personal account
    assert team["member_client"].get("/settings/keys").status_code == 200
    assert "Create an organization" in team["member_client"].get("/settings/organization").content.decode()
    # the last admin can neither leave nor be demoted
    response = _post(client, "/settings/organization", action="leave")
    assert response.status_code == 400 and "last admin" in response.content.decode()
    with pytest.raises(OrganizationError):
        organization_role_set(organization=org, user=team["admin"], role="member")
    with pytest.raises(OrganizationError):
        organization_member_remove(organization=org, user=team["admin"])


def test_credit_moves_are_exact_idempotent_and_one_way(client, team):
    org, personal = team["org"], team["admin_personal"]
    before = personal.balance
    response = _post(client, "/settings/organization", action="transfer", amount="2.5", token="t1")
    assert response.status_code == 302
    _post(client, "/settings/organization", action="transfer", amount="2.5", token="t1")  # the same form again
    personal.refresh_from_db()
    org.refresh_from_db()
    assert personal.balance == before - usd_to_nanos("2.5")
    assert org.balance == usd_to_nanos("2.5")
    assert ledger_sum(account_id=org.id) == org.balance and ledger_sum(account_id=personal.id) == personal.balance
    assert ledger_drift() == []
    for amount in ("-1", "0", "abc", "1e999999", "100000"):
        assert _post(client, "/settings/organization", action="transfer", amount=amount).status_code == 400, amount
    with pytest.raises(TransferError):
        credits_transfer(source=org, target=personal, amount=1, idempotency_key="back")  # never back
    org.refresh_from_db()
    assert org.balance == usd_to_nanos("2.5")
    # the counters mirror the move
    snapshot = counters().snapshot(org.id)
    assert snapshot["bal"] in (None, org.balance)


def test_activity_api_filters_by_member(client, team):
    org = team["org"]
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    member_key = ApiKey.objects.get(name="member-key")
    admin_key = make_key(account=org)
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    settle(account=org, api_key=member_key, when=yesterday, cost=1000)
    settle(account=org, api_key=admin_key.key, when=yesterday, cost=5000)
    manager = make_key(account=org, management=True)
    rows = client.get("/api/v1/activity", headers=manager.headers).json()["data"]
    assert sum(r["usage"] for r in rows) == pytest.approx(6e-6)
    rows = client.get(f"/api/v1/activity?user_id={team['member_personal'].public_id}", headers=manager.headers).json()["data"]
    assert sum(r["usage"] for r in rows) == pytest.approx(1e-6)
    assert client.get("/api/v1/activity?user_id=user_nobody", headers=manager.headers).status_code == 404
    other = make_key(management=True)
    assert client.get(f"/api/v1/activity?user_id={team['member_personal'].public_id}", headers=other.headers).status_code == 404
    assert Generation.objects.filter(account=org).count() == 2


def test_guardrail_pages_create_assign_and_show_state(client, team):
    org = team["org"]
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    key = ApiKey.objects.get(name="member-key")
    response = _post(client, "/settings/guardrails", name="Daily cap", limit="0.01", reset_interval="daily")
    assert response.status_code == 302
    guardrail = gr.guardrail_list(account=org)[0][0]
    assert guardrail.limit == usd_to_nanos("0.01") and guardrail.reset_interval == "daily"
    response = client.post(f"/settings/guardrails/{guardrail.id}", {
        "action": "assign", "key_hashes": [key.hash], "member_user_ids": [team["member_personal"].public_id],
    })
    assert response.status_code == 302
    page = client.get("/settings/guardrails").content.decode()
    assert "member-key" in page and team["member"].email in page and 'data-testid="blocked"' not in page
    settle(account=org, api_key=key, cost=usd_to_nanos("0.01"))
    page = client.get(f"/settings/guardrails/{guardrail.id}").content.decode()
    assert page.count('data-testid="blocked"') == 2  # the key and the member
    assert 'value="None"' not in page and 'value="0.01"' in page
    response = client.post(f"/settings/guardrails/{guardrail.id}", {  # the edit form sent back as shown
        "action": "save", "name": "Daily cap", "limit": "0.01", "reset_interval": "daily", "allowed_models": "",
        "ignored_models": "", "allowed_providers": "", "ignored_providers": "", "enforce_zdr_openai": "on",
    })
    assert response.status_code == 302
    guardrail.refresh_from_db()
    assert guardrail.enforce_zdr_openai is True and guardrail.allowed_models is None
    for bad in ({"name": ""}, {"name": "x", "limit": "-1"}, {"name": "x", "limit": "abc"},
                {"name": "x", "reset_interval": "hourly"}, {"name": "x", "allowed_providers": "nowhere"}):
        assert client.post("/settings/guardrails", bad).status_code == 400, bad
    other_org_guardrail = gr.guardrail_create(account=make_key().account, name="theirs")
    assert client.get(f"/settings/guardrails/{other_org_guardrail.id}").status_code == 404
    assert client.get("/settings/guardrails/not-a-uuid").status_code == 404
    assert client.get(f"/settings/guardrails/{uuid.uuid4()}").status_code == 404
    response = client.post(f"/settings/guardrails/{guardrail.id}", {"action": "assign", "key_hashes": ["0" * 64]})
    assert response.status_code == 400


def test_activity_page_groups_by_member(client, team):
    org = team["org"]
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key-2"})
    settle(account=org, api_key=ApiKey.objects.get(name="member-key"), cost=1000)
    settle(account=org, api_key=ApiKey.objects.get(name="member-key-2"), cost=2000)
    settle(account=org, api_key=make_key(account=org).key, cost=5000)
    from activity.selectors import usage_chart

    chart = usage_chart(account_id=org.id, period="1d", group="member")
    spend = {s.name: sum(s.values["spend"]) for s in chart.series}
    assert spend == {team["member"].email: 3000, team["admin"].email: 5000}
    page = client.get("/activity?period=1d&group=member")
    assert page.status_code == 200 and team["member"].email in page.content.decode()


def test_activity_page_filters_by_member(client, team):
    org = team["org"]
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    member_gen = settle(account=org, api_key=ApiKey.objects.get(name="member-key"), cost=1000)
    admin_gen = settle(account=org, api_key=make_key(account=org).key, cost=5000)
    page = client.get("/activity?period=1d")
    html = page.content.decode()
    assert page.status_code == 200 and 'name="member"' in html and team["member"].email in html
    both = client.get("/activity?period=1d").content.decode()
    assert member_gen in both and admin_gen in both
    only = client.get(f"/activity?period=1d&member={team['member_personal'].public_id}").content.decode()
    assert member_gen in only and admin_gen not in only
    export = client.get(f"/activity/export.csv?period=1d&group=key&member={team['member_personal'].public_id}")
    assert export.status_code == 200 and "0.000001" in export.content.decode() and "0.000005" not in export.content.decode()
    # Not a member of this organization (another account's user, or nobody): a message, not a 500.
    outsider_client = Client()
    _outsider, outsider_personal = signed_in_user(outsider_client)
    for member in (outsider_personal.public_id, "user_nobody", "user_%00x"):
        assert client.get(f"/activity?period=1d&member={member}").status_code == 400
    # A personal account has no member filter.
    assert 'name="member"' not in outsider_client.get("/activity?period=1d").content.decode()


def test_organization_keys_name_their_creator_in_the_api(client, team):
    team["member_client"].post("/settings/keys", {"kind": "inference", "name": "member-key"})
    manager = make_key(account=team["org"], management=True)
    data = client.get("/api/v1/keys", headers=manager.headers).json()["data"]
    by_name = {k["name"]: k for k in data}
    assert by_name["member-key"]["creator_user_id"] == team["member_personal"].public_id


def test_activity_api_refuses_nul_and_malformed_filters_with_404(client):
    manager = make_key(management=True)
    for query in ("api_key_hash=%00", "api_key_hash=" + "a" * 63 + "%00", "user_id=user_%00x", "api_key_hash=zz"):
        response = client.get(f"/api/v1/activity?{query}", headers=manager.headers)
        assert response.status_code == 404, (query, response.content)
