"""The official ``openai`` SDK, pointed at the live gateway unchanged, just works."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from billing.money import nanos_to_usd_number, tokens_cost
from billing.settlement import settlement_flush
from routing.models import Model
from tests.factories import KeyBundle, make_account, make_key
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello in five words."}]


def client(server, bundle) -> OpenAI:
    # No retries: a failure must surface at once, and the tests stay fast.
    return OpenAI(base_url=server.api, api_key=bundle.raw, max_retries=0, timeout=30)


def cost_of(endpoint, prompt_tokens: int, completion_tokens: int) -> int:
    return (
        tokens_cost(prompt_tokens, endpoint.price_prompt)
        + tokens_cost(completion_tokens, endpoint.price_completion)
        + endpoint.price_request
    )


def test_chat_non_streaming(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    completion = client(gateway, bundle).chat.completions.create(model=slug, messages=HELLO, max_tokens=12)
    assert completion.id.startswith("gen-")
    assert completion.object == "chat.completion"
    assert completion.model == slug
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    served = next(e for e in endpoints if e.provider.name == completion.model_extra["provider"])
    expected = cost_of(served, usage.prompt_tokens, usage.completion_tokens)
    assert usage.model_extra["cost"] == nanos_to_usd_number(expected)
    assert served.model.slug == slug


def test_chat_raw_response_carries_generation_id_header(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    raw = client(gateway, bundle).chat.completions.with_raw_response.create(model=slug, messages=HELLO, max_tokens=6)
    completion = raw.parse()
    assert raw.headers["x-generation-id"] == completion.id


def test_chat_streaming(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    stream = client(gateway, bundle).chat.completions.create(model=slug, messages=HELLO, max_tokens=8, stream=True)
    chunks = list(stream)
    assert len(chunks) >= 2
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("gen-")
    assert all(c.object == "chat.completion.chunk" and c.model == slug for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing and finishing[-1] in {"stop", "length"}
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    served = next(e for e in endpoints if e.provider.name == chunks[0].model_extra["provider"])
    expected = cost_of(served, last.usage.prompt_tokens, last.usage.completion_tokens)
    assert last.usage.model_extra["cost"] == nanos_to_usd_number(expected)


def test_legacy_completions(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    completion = client(gateway, bundle).completions.create(model=slug, prompt="Once upon a time", max_tokens=8)
    assert completion.id.startswith("gen-")
    assert completion.model == slug
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.model_extra["cost"] > 0


def test_legacy_completions_streaming(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="5")
    stream = client(gateway, bundle).completions.create(
        model=slug, prompt="Once upon a time", max_tokens=6, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] > 0


def test_models_list_includes_the_catalog(gateway):
    bundle = make_key()
    page = client(gateway, bundle).models.list()
    ids = {m.id for m in page.data}
    catalog = set(Model.objects.values_list("slug", flat=True))
    assert catalog and ids
    slug, _ = multi_provider_model()
    assert slug in ids
    assert ids <= catalog


def test_openrouter_extensions_in_extra_body_are_accepted(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key(credits="5")
    completion = client(gateway, bundle).chat.completions.create(
        model=slug,
        messages=HELLO,
        max_tokens=6,
        extra_body={
            "models": [slug],
            "provider": {"sort": "price", "allow_fallbacks": True, "data_collection": "allow"},
            "usage": {"include": True},
        },
        extra_headers={"HTTP-Referer": "https://sdk-test.example", "X-Title": "SDK test"},
    )
    assert completion.choices[0].message.content
    assert completion.model_extra["provider"] in {e.provider.name for e in endpoints}


def test_bad_key_is_authentication_error(gateway):
    bad = KeyBundle(raw="sk-or-v1-" + "0" * 64, key=None, account=None)
    with pytest.raises(openai.AuthenticationError) as info:
        client(gateway, bad).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert info.value.status_code == 401
    assert info.value.body["code"] == 401
    assert info.value.body["message"] == "User not found."


def test_unknown_model_is_bad_request_error(gateway):
    bundle = make_key()
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, bundle).chat.completions.create(model="nobody/no-such-model", messages=HELLO)
    assert info.value.status_code == 400
    assert "nobody/no-such-model" in info.value.message


def test_empty_account_is_402(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(account=make_account(credits="0"))
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, bundle).chat.completions.create(model=slug, messages=HELLO, max_tokens=8)
    assert info.value.status_code == 402
    assert "credits" in info.value.message.lower()
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 0


def test_management_key_is_permission_denied(gateway):
    slug, _ = multi_provider_model()
    bundle = make_key(management=True)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(gateway, bundle).chat.completions.create(model=slug, messages=HELLO, max_tokens=8)
    assert info.value.status_code == 403


def test_streaming_error_before_first_byte_is_typed_too(gateway):
    bundle = make_key()
    with pytest.raises(openai.BadRequestError):
        client(gateway, bundle).chat.completions.create(model="nobody/no-such-model", messages=HELLO, stream=True)
