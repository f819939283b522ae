"""The official ``openrouter`` Python SDK against the live gateway.

The SDK validates every response with Pydantic models generated from the official spec
(a mismatch raises ``ResponseValidationError``), so each call here also proves that our
response shapes match OpenRouter's.
"""

from __future__ import annotations

import hashlib

import pytest
from openrouter import OpenRouter, errors

from activity.models import Generation
from billing.money import nanos_to_usd_number, usd_to_nanos
from billing.services import credits_grant
from billing.settlement import settlement_flush
from routing.models import Model, Provider
from tests.factories import KeyBundle, make_account, make_key
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello in five words."}]


def sdk(server, bundle) -> OpenRouter:
    return OpenRouter(api_key=bundle.raw, server_url=server.api, timeout_ms=30_000)


# --- inference ---------------------------------------------------------------------------------


def test_chat_send(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    with sdk(gateway, bundle) as client:
        result = client.chat.send(model=slug, messages=HELLO, max_tokens=12)
    assert result.id.startswith("gen-")
    assert result.model == slug
    assert result.choices[0].message.content
    assert result.choices[0].finish_reason in {"stop", "length"}
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.usage.cost > 0


def test_chat_send_streaming(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    with sdk(gateway, bundle) as client:
        stream = client.chat.send(model=slug, messages=HELLO, max_tokens=8, stream=True)
        with stream as events:
            chunks = list(events)
    assert len(chunks) >= 2
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("gen-")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0 and usage.cost > 0


def test_chat_send_then_get_generation(gateway):
    """The id a chat answer returns can be read back at once (the endpoint waits for the write)."""
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    with OpenRouter(
        api_key=bundle.raw,
        server_url=gateway.api,
        http_referer="https://sdk.example/app",
        x_open_router_title="SDK App",
    ) as client:
        result = client.chat.send(model=slug, messages=HELLO, max_tokens=10)
        generation = client.generations.get_generation(id=result.id).data
    assert generation.id == result.id
    assert generation.model == slug
    assert generation.provider_name in {e.provider.name for e in endpoints}
    assert generation.total_cost == result.usage.cost
    assert generation.tokens_prompt == result.usage.prompt_tokens
    assert generation.tokens_completion == result.usage.completion_tokens
    assert generation.streamed is False
    assert generation.http_referer == "https://sdk.example/app"
    assert Generation.objects.get(id=result.id).app_title == "SDK App"  # sent as X-OpenRouter-Title


def test_get_generation_unknown_id_is_404(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client, pytest.raises(errors.NotFoundResponseError) as info:
        client.generations.get_generation(id="gen-1000000000-doesnotexist0000")
    assert info.value.status_code == 404


# --- catalog -----------------------------------------------------------------------------------


def test_models_list(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client:
        response = client.models.list()
    assert response.result.links.next is None
    ids = {m.id for m in response.result.data}
    assert response.result.total_count == len(ids)
    slug, _ = multi_provider_model()
    assert slug in ids
    assert ids <= set(Model.objects.values_list("slug", flat=True))


def test_models_count(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client:
        count = client.models.count().data.count
        listed = len(client.models.list().result.data)
    assert count == listed > 0


def test_endpoints_list(gateway):
    slug, endpoints = multi_provider_model()
    author, name = slug.split("/", 1)
    bundle = make_key()
    with sdk(gateway, bundle) as client:
        response = client.endpoints.list(author=author, slug=name)
    assert response.data.id == slug
    assert {e.provider_name for e in response.data.endpoints} == {e.provider.name for e in endpoints}


def test_endpoints_list_unknown_model_is_404(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client, pytest.raises(errors.NotFoundResponseError):
        client.endpoints.list(author="nobody", slug="no-such-model")


def test_providers_list(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client:
        response = client.providers.list()
    slugs = {p.slug for p in response.data}
    assert slugs and slugs <= set(Provider.objects.values_list("slug", flat=True))


# --- keys, credits -----------------------------------------------------------------------------


def test_current_key_metadata(gateway):
    bundle = make_key(credits="5", limit="2")
    with sdk(gateway, bundle) as client:
        data = client.api_keys.get_current_key_metadata().data
    assert data.label == bundle.key.label
    assert data.limit == 2
    assert data.limit_remaining == 2
    assert data.usage == 0
    assert data.is_management_key is False
    assert data.is_free_tier is True
    assert data.workspace_id and data.organization_id is None
    assert [b.scope for b in data.budgets] == ["key_limit"]
    assert data.effective_budget.limit_usd == 2 and data.effective_budget.remaining_usd == 2
    assert data.effective_budget.reset_interval is None and data.effective_budget.resets_at is None
    assert data.free_model_daily_requests.limit == 50
    assert data.free_model_daily_requests.used == 0 and data.free_model_daily_requests.remaining == 50


def test_current_key_metadata_bad_key_is_401(gateway):
    bad = KeyBundle(raw="sk-or-v1-" + "1" * 64, key=None, account=None)
    with sdk(gateway, bad) as client, pytest.raises(errors.UnauthorizedResponseError) as info:
        client.api_keys.get_current_key_metadata()
    assert info.value.status_code == 401


def test_get_credits(gateway):
    account = make_account(credits="7")
    credits_grant(account=account, amount=usd_to_nanos("3.5"), idempotency_key=f"sdk-credits:{account.id}")
    manager = make_key(account=account, management=True)
    with sdk(gateway, manager) as client:
        data = client.credits.get_credits().data
    assert data.total_credits == 10.5
    assert data.total_usage == 0


def test_get_credits_with_inference_key_is_403(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client, pytest.raises(errors.ForbiddenResponseError) as info:
        client.credits.get_credits()
    assert info.value.status_code == 403


def test_api_keys_crud(gateway):
    manager = make_key(management=True)
    with sdk(gateway, manager) as client:
        created = client.api_keys.create(name="sdk key", limit=1.5, limit_reset="monthly")
        raw = created.key
        assert raw.startswith("sk-or-v1-")
        key_hash = created.data.hash
        assert key_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert created.data.name == "sdk key"
        assert created.data.limit == 1.5 and created.data.limit_reset == "monthly"
        assert created.data.disabled is False
        assert created.data.last_used_at is None

        listed = client.api_keys.list()
        assert [k.hash for k in listed.data] == [key_hash]

        fetched = client.api_keys.get(hash=key_hash).data
        assert fetched.hash == key_hash and fetched.label == created.data.label

        updated = client.api_keys.update(hash=key_hash, name="renamed", disabled=True, limit=3)
        assert updated.data.name == "renamed" and updated.data.disabled is True and updated.data.limit == 3

        assert client.api_keys.list().data == []
        assert [k.hash for k in client.api_keys.list(include_disabled=True).data] == [key_hash]

        deleted = client.api_keys.delete(hash=key_hash)
        assert deleted.DELETED is True
        with pytest.raises(errors.NotFoundResponseError):
            client.api_keys.get(hash=key_hash)


def test_created_key_works_for_inference_through_the_sdk(gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="5")
    manager = make_key(account=account, management=True)
    with sdk(gateway, manager) as client:
        raw = client.api_keys.create(name="worker").key
    with OpenRouter(api_key=raw, server_url=gateway.api) as worker:
        result = worker.chat.send(model=slug, messages=HELLO, max_tokens=6)
        settlement_flush()
        metadata = worker.api_keys.get_current_key_metadata().data
    assert result.usage.cost > 0
    assert metadata.usage == metadata.usage_daily == result.usage.cost
    account.refresh_from_db()
    assert nanos_to_usd_number(account.total_usage) == result.usage.cost


def test_api_keys_with_inference_key_is_403(gateway):
    bundle = make_key()
    with sdk(gateway, bundle) as client, pytest.raises(errors.OpenRouterError) as info:
        client.api_keys.list()
    assert info.value.status_code == 403
    assert "Only management keys" in info.value.body
