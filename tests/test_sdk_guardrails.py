"""The official ``openrouter`` Python SDK's guardrails and organization calls against the live server.

The SDK validates each response with models generated from the official spec, so every call here
also proves our shapes; it sends the bodies OpenRouter's own clients send."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from openrouter import OpenRouter, errors

from accounts.models import Account
from accounts.organizations import organization_create, organization_member_add
from accounts.services import user_get_or_create
from tests.factories import make_account, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(server, bundle) -> OpenRouter:
    return OpenRouter(api_key=bundle.raw, server_url=server.api, timeout_ms=30_000)


def test_guardrails_crud_and_assignments(gateway):
    manager = make_key(management=True)
    key = make_key(account=manager.account, name="assigned")
    with sdk(gateway, manager) as client:
        created = client.guardrails.create(
            name="SDK budget", description="from the SDK", limit_usd=2.5, reset_interval="monthly",
            allowed_models=["openai/gpt-4o-mini"], enforce_zdr_openai=True, include_byok_in_budgets=True,
        ).data
        assert created.name == "SDK budget" and created.limit_usd == 2.5 and created.reset_interval == "monthly"
        assert created.include_byok_in_budgets is True and created.allowed_models == ["openai/gpt-4o-mini"]
        fetched = client.guardrails.get(id=created.id).data
        assert fetched.id == created.id and fetched.enforce_zdr_openai is True
        listed = client.guardrails.list(limit=10)
        assert listed.result.total_count == 1 and listed.result.data[0].id == created.id
        updated = client.guardrails.update(id=created.id, limit_usd=5, reset_interval="weekly").data
        assert updated.limit_usd == 5 and updated.reset_interval == "weekly" and updated.updated_at
        assert client.guardrails.bulk_assign_keys(id=created.id, key_hashes=[key.key.hash]).assigned_count == 1
        assignments = client.guardrails.list_guardrail_key_assignments(id=created.id).result
        assert assignments.total_count == 1 and assignments.data[0].key_hash == key.key.hash
        assert assignments.data[0].key_name == "assigned"
        assert client.guardrails.list_key_assignments().result.total_count == 1
        assert client.guardrails.bulk_unassign_keys(id=created.id, key_hashes=[key.key.hash]).unassigned_count == 1
        assert client.guardrails.list_member_assignments().result.total_count == 0
        assert client.guardrails.delete(id=created.id).DELETED is True  # the SDK names the const field so
        with pytest.raises(errors.NotFoundResponseError):
            client.guardrails.get(id=created.id)
        with pytest.raises(errors.BadRequestResponseError):
            client.guardrails.create(name="bad", limit_usd=-1)


def test_organization_members_and_member_assignments(gateway):
    owner = make_account(credits="0")
    org = organization_create(owner=owner.owner, name="SDK Org")
    user, _ = user_get_or_create(email="sdk-member@example.com")
    get_user_model().objects.filter(id=user.id).update(first_name="Ada", last_name="Lovelace")
    member_account = make_account(email=user.email, credits="0")
    organization_member_add(organization=org, user=user)
    manager = make_key(account=Account.objects.get(id=org.id), management=True)
    with sdk(gateway, manager) as client:
        members = client.organization.list_members().result
        assert members.total_count == 2
        by_email = {m.email: m for m in members.data}
        assert by_email["sdk-member@example.com"].role == "org:member"
        assert by_email["sdk-member@example.com"].first_name == "Ada"
        assert by_email["sdk-member@example.com"].id == member_account.public_id
        assert by_email[owner.owner.email].role == "org:admin"
        guardrail = client.guardrails.create(name="Members", limit_usd=1, reset_interval="daily").data
        result = client.guardrails.bulk_assign_members(id=guardrail.id, member_user_ids=[member_account.public_id])
        assert result.assigned_count == 1
        listed = client.guardrails.list_member_assignments().result
        assert listed.data[0].user_id == member_account.public_id and listed.data[0].organization_id == org.public_id
        assert client.guardrails.bulk_unassign_members(
            id=guardrail.id, member_user_ids=[member_account.public_id]
        ).unassigned_count == 1
    with sdk(gateway, make_key(management=True)) as client, pytest.raises(errors.NotFoundResponseError):
        client.organization.list_members()  # a personal account has no organization
