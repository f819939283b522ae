"""Guardrails on the live gateway: nothing until assigned; budgets held and spent per key and per member,
refused with a 403 naming the guardrail; windows reset at the UTC boundary (time travel); allowlists of
the key's guardrail, the member's guardrail and the account's privacy settings intersect."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction

from accounts import guardrails as gr
from accounts.models import Account
from accounts.organizations import organization_create, organization_member_add, organization_member_remove
from accounts.services import account_privacy_update, api_key_create, user_get_or_create
from activity.models import Generation
from billing.counters import counters, limit_window, window_reset_at
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift
from billing.services import credits_grant
from billing.settlement import settlement_flush
from tests.factories import KeyBundle, make_account, make_key
from tests.routing.gateway_helpers import error_of, post
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(gateway, bundle, model: str, **extra):
    return post(gateway, bundle, {"model": model, "max_tokens": 8, **extra})


def _guardrail(account, **fields):
    return gr.guardrail_create(account=account, name=fields.pop("name", "Team rule"), **fields)


def _assign_key(guardrail, bundle):
    with transaction.atomic():
        gr.guardrail_keys_assign(guardrail=guardrail, keys=[bundle.key], assigned_by=None)


def _spent(bundle) -> int:
    settlement_flush()
    return sum(Generation.objects.filter(api_key=bundle.key).values_list("cost", flat=True))


def test_a_guardrail_enforces_nothing_until_assigned_then_at_once(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="1")
    guardrail = _guardrail(bundle.account, limit=0, reset_interval="daily", name="Frozen")
    assert _ask(gateway, bundle, slug).status_code == 200  # created, not assigned: nothing
    _assign_key(guardrail, bundle)  # the key is cached in the gateway: the assignment reaches it at once
    response = _ask(gateway, bundle, slug)
    assert response.status_code == 403, response.text
    error = error_of(response)
    assert "Guardrail 'Frozen'" in error["message"] and "daily budget of $0" in error["message"]
    assert error["metadata"]["guardrail_id"] == str(guardrail.id)
    assert error["metadata"]["reason"] == "budget_exceeded"
    with transaction.atomic():
        gr.guardrail_keys_unassign(guardrail=guardrail, key_hashes=[bundle.key.hash])
    assert _ask(gateway, bundle, slug).status_code == 200


def test_the_budget_counts_real_spend_and_refuses_once_spent(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="1")
    other = make_key(account=bundle.account)  # same account, no guardrail
    guardrail = _guardrail(bundle.account, limit=usd_to_nanos("1"), reset_interval="daily", name="Daily")
    _assign_key(guardrail, bundle)
    assert _ask(gateway, bundle, slug).status_code == 200
    assert _ask(gateway, bundle, slug).status_code == 200
    spent = _spent(bundle)
    assert spent > 0
    snapshot = counters().budget_snapshot(f"k:{bundle.key.hash}", limit_window("daily"))
    assert snapshot == {"spent": spent, "held": 0}  # the mirror holds the real cost, nothing left held
    with transaction.atomic():
        gr.guardrail_update(guardrail=guardrail, limit=spent)  # exactly what was spent: nothing is left
    response = _ask(gateway, bundle, slug)
    assert response.status_code == 403 and "'Daily'" in error_of(response)["message"]
    assert _ask(gateway, other, slug).status_code == 200  # budgets are per key
    assert ledger_drift() == []


def _until_refused(gateway, bundle, slug, **extra) -> dict:
    """Requests until the budget refuses one (a budget of a few requests' cost): the 403's error."""
    for _ in range(30):
        response = _ask(gateway, bundle, slug, **extra)
        if response.status_code == 403:
            return error_of(response)
        assert response.status_code == 200, response.text
    raise AssertionError("the budget never refused a request")


def test_the_window_resets_at_utc_midnight(gateway):
    slug, endpoints = multi_provider_model()
    # One provider throughout: with price-weighted balancing a dearer provider's hold could be larger
    # than the budget sized below from the first request's cost, and be refused on the new day.
    pinned = {"provider": {"order": [endpoints[0].provider.slug], "allow_fallbacks": False}}
    bundle = make_key(credits="1")
    guardrail = _guardrail(bundle.account, limit=usd_to_nanos("1"), reset_interval="daily", name="Daily")
    _assign_key(guardrail, bundle)
    assert _ask(gateway, bundle, slug, **pinned).status_code == 200
    one_request = _spent(bundle)
    with transaction.atomic():
        gr.guardrail_update(guardrail=guardrail, limit=one_request * 4)  # room for a few requests a day
    late = dt.datetime.now(dt.UTC).replace(hour=23, minute=59, second=0, microsecond=0)
    midnight = late + dt.timedelta(minutes=1)
    with time_machine.travel(late, tick=True):
        error = _until_refused(gateway, bundle, slug, **pinned)
        assert error["metadata"]["resets_at"] == midnight.isoformat().replace("+00:00", "Z")
        assert f"resets at {midnight.isoformat().replace('+00:00', 'Z')}" in error["message"]
    with time_machine.travel(midnight + dt.timedelta(seconds=1), tick=True):  # the next day: a new budget
        response = _ask(gateway, bundle, slug, **pinned)
        assert response.status_code == 200, response.text
        _until_refused(gateway, bundle, slug, **pinned)
    settlement_flush()
    by_day: dict = {}
    for created, cost in Generation.objects.filter(api_key=bundle.key).values_list("created_at", "cost"):
        by_day[created.date()] = by_day.get(created.date(), 0) + cost
    assert by_day[midnight.date()] <= one_request * 4  # the budget held on the new day
    # a weekly budget does not reset at midnight unless the new day is a Monday
    with transaction.atomic():
        gr.guardrail_update(guardrail=guardrail, reset_interval="weekly")
    sunday = midnight + dt.timedelta(days=(6 - midnight.weekday()) % 7, hours=12)
    with time_machine.travel(sunday, tick=True):
        _until_refused(gateway, bundle, slug, **pinned)
    with time_machine.travel(sunday + dt.timedelta(hours=12, seconds=1), tick=True):  # Monday 00:00:01
        assert _ask(gateway, bundle, slug, **pinned).status_code == 200


def test_window_boundaries():
    sunday = dt.datetime(2026, 3, 8, 23, 59, 59, tzinfo=dt.UTC)
    monday = dt.datetime(2026, 3, 9, 0, 0, 0, tzinfo=dt.UTC)
    assert limit_window("weekly", sunday) != limit_window("weekly", monday)
    assert limit_window("weekly", monday) == limit_window("weekly", monday + dt.timedelta(days=6, hours=23))
    assert window_reset_at("weekly", sunday) == monday
    assert window_reset_at("weekly", monday) == monday + dt.timedelta(days=7)
    assert window_reset_at("daily", sunday) == monday
    assert window_reset_at("monthly", dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert limit_window("monthly", dt.datetime(2026, 1, 31, tzinfo=dt.UTC)) != limit_window(
        "monthly", dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    )


def _org_member_key(credits: str = "1"):
    owner = make_account(credits="0")
    org = organization_create(owner=owner.owner, name="Acme")
    credits_grant(account=org, amount=usd_to_nanos(credits), idempotency_key=f"test-org:{org.id}")
    user, _ = user_get_or_create(email=f"member-{org.id}@example.com")
    organization_member_add(organization=org, user=user)
    with transaction.atomic():
        key, raw = api_key_create(account=org, name="member key", creator=user)
    return org, user, KeyBundle(raw=raw, key=key, account=org)


def test_a_member_budget_counts_every_key_of_the_member(gateway):
    slug, _ = multi_provider_model()
    org, user, first = _org_member_key()
    with transaction.atomic():
        key, raw = api_key_create(account=org, name="second", creator=user)
    second = KeyBundle(raw=raw, key=key, account=org)
    admin_key = make_key(account=org)  # the owner's (admin's) key: not the member's
    guardrail = _guardrail(org, limit=usd_to_nanos("1"), reset_interval="weekly", name="Member budget")
    with transaction.atomic():
        gr.guardrail_members_assign(guardrail=guardrail, users=[user], assigned_by=None)
    assert _ask(gateway, first, slug).status_code == 200
    assert _ask(gateway, second, slug).status_code == 200
    settlement_flush()
    spent = sum(Generation.objects.filter(api_key__creator=user).values_list("cost", flat=True))
    with transaction.atomic():
        gr.guardrail_update(guardrail=guardrail, limit=spent)
    for bundle in (first, second):
        response = _ask(gateway, bundle, slug)
        assert response.status_code == 403 and "'Member budget'" in error_of(response)["message"]
        assert "for this member" in error_of(response)["message"]
    assert _ask(gateway, admin_key, slug).status_code == 200


def test_removing_a_member_disables_their_keys_at_once(gateway):
    slug, _ = multi_provider_model()
    org, user, bundle = _org_member_key()
    assert _ask(gateway, bundle, slug).status_code == 200  # cached in the gateway now
    assert organization_member_remove(organization=org, user=user) == 1
    response = _ask(gateway, bundle, slug)
    assert response.status_code == 401 and "disabled" in error_of(response)["message"]


def _privacy(account, **changes):
    fields = dict(allow_training_paid=True, allow_training_free=True, zdr_only=False, allowed_providers=[],
                  ignored_providers=[], allow_training_discount=False)
    account_privacy_update(account=Account.objects.get(id=account.id), **{**fields, **changes})


def test_allowlists_intersect(gateway):
    slug, endpoints = multi_provider_model(3)
    a, b, c = (e.provider.slug for e in endpoints[:3])
    org, user, bundle = _org_member_key()
    key_rule = _guardrail(org, name="Key rule", allowed_providers=[a, b])
    member_rule = _guardrail(org, name="Member rule", allowed_providers=[b, c])
    _assign_key(key_rule, bundle)
    with transaction.atomic():
        gr.guardrail_members_assign(guardrail=member_rule, users=[user], assigned_by=None)
    # the request prefers a, then c: only b is allowed by both
    response = _ask(gateway, bundle, slug, provider={"order": [a, c, b]})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == endpoints[1].provider.name
    # the account's privacy settings narrow further: nothing is left, the privacy error (not a guardrail's)
    with transaction.atomic():
        _privacy(org, allowed_providers=[a])
    response = _ask(gateway, bundle, slug)
    assert response.status_code in (404, 400, 403) and "Guardrail" not in error_of(response)["message"]
    with transaction.atomic():
        _privacy(org, allowed_providers=[])
        gr.guardrail_update(guardrail=member_rule, allowed_providers=[c])
    response = _ask(gateway, bundle, slug)  # key rule a/b, member rule c: nothing is allowed by both
    assert response.status_code == 403
    assert error_of(response)["message"].startswith("Guardrail 'Member rule' blocked this request")
    assert error_of(response)["metadata"]["reason"] == "not_allowed"


def test_model_allowlists_intersect_and_ignore_lists_add_up(gateway):
    slug, _ = multi_provider_model()
    other_slug = next(
        e.model.slug for e in endpoints_of_all() if e.model.slug != slug and not e.model.slug.endswith(":free")
    )
    org, user, bundle = _org_member_key()
    _assign_key(_guardrail(org, name="Key models", allowed_models=[slug, other_slug]), bundle)
    member_rule = _guardrail(org, name="Member models", allowed_models=[slug])
    with transaction.atomic():
        gr.guardrail_members_assign(guardrail=member_rule, users=[user], assigned_by=None)
    assert _ask(gateway, bundle, slug).status_code == 200
    response = _ask(gateway, bundle, other_slug)
    assert response.status_code == 403
    assert error_of(response)["message"] == (
        f"Guardrail 'Member models' blocked this request: it does not allow the model {other_slug}"
    )
    with transaction.atomic():
        gr.guardrail_update(guardrail=member_rule, allowed_models=None, ignored_models=[slug])
    assert _ask(gateway, bundle, slug).status_code == 403
    assert _ask(gateway, bundle, other_slug).status_code == 200
    # a fallback list keeps the allowed model
    assert _ask(gateway, bundle, slug, models=[other_slug]).json()["model"] == other_slug


def endpoints_of_all():
    from routing.models import Endpoint

    return Endpoint.objects.filter(active=True, price_prompt__gt=0).select_related("model").order_by("id")


def test_zdr_is_per_model_group_and_any_guardrail_asking_is_enough(gateway):
    from routing import catalog_cache
    from routing.guardrails import model_group
    from routing.models import Provider

    slug, endpoints = multi_provider_model()
    Provider.objects.filter(id__in=[e.provider_id for e in endpoints]).update(zdr=False)
    Provider.objects.filter(id=endpoints[1].provider_id).update(zdr=True)  # only the dearer endpoint is ZDR
    catalog_cache.invalidate()
    group = model_group(slug)
    org, user, bundle = _org_member_key()
    key_rule = _guardrail(org, name="Other group", **{f"enforce_zdr_{g}": g != group for g in ("openai", "anthropic", "google", "xai", "other")})
    _assign_key(key_rule, bundle)
    response = _ask(gateway, bundle, slug, provider={"sort": "price"})
    assert response.json()["provider"] == endpoints[0].provider.name  # not this model's group: no ZDR
    member_rule = _guardrail(org, name="This group", **{f"enforce_zdr_{group}": True})
    with transaction.atomic():
        gr.guardrail_members_assign(guardrail=member_rule, users=[user], assigned_by=None)
    response = _ask(gateway, bundle, slug, provider={"sort": "price"})
    assert response.json()["provider"] == endpoints[1].provider.name  # OR: the member's rule asks for ZDR
    Provider.objects.filter(id=endpoints[1].provider_id).update(zdr=False)
    catalog_cache.invalidate()
    response = _ask(gateway, bundle, slug)
    assert response.status_code == 403 and "zero-data-retention" in error_of(response)["message"]
    assert "'This group'" in error_of(response)["message"]


def test_a_budget_assigned_again_counts_what_was_spent_meanwhile(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="1")
    guardrail = _guardrail(bundle.account, limit=usd_to_nanos("1"), reset_interval="daily", name="Again")
    _assign_key(guardrail, bundle)
    assert _ask(gateway, bundle, slug).status_code == 200  # the budget's mirror is loaded and kept
    with transaction.atomic():
        gr.guardrail_keys_unassign(guardrail=guardrail, key_hashes=[bundle.key.hash])
    assert _ask(gateway, bundle, slug).status_code == 200  # spent while no budget applied: the mirror missed it
    # The mirror is re-read from the written generations: one still in the settlement writer's queue (it
    # batches, up to MAX_PAUSE under load) is not in it yet.
    settlement_flush()
    _assign_key(guardrail, bundle)  # assigned again: the mirror is re-read, both requests count
    assert _ask(gateway, bundle, slug).status_code == 200
    spent = _spent(bundle)
    assert counters().budget_snapshot(f"k:{bundle.key.hash}", limit_window("daily")) == {"spent": spent, "held": 0}
    with transaction.atomic():
        gr.guardrail_update(guardrail=guardrail, limit=spent)
    assert _ask(gateway, bundle, slug).status_code == 403
