"""Protocol details of chat completions: keep-alive comments, legacy fields, errors before a stream."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from accounts.models import ApiKey
from tests.factories import make_key
from tests.routing.gateway_helpers import stream as stream_chat
from tests.routing.test_chat_completions import chat, multi_provider_model, stream_events

pytestmark = pytest.mark.django_db(transaction=True)


def test_keepalive_comments_while_waiting_for_the_provider(gateway, simulator, settings):
    settings.GATEWAY_KEEPALIVE_SECONDS = 0.2
    slug, endpoints = multi_provider_model()
    simulator.set(endpoints[0].provider.slug, latency_ms=900)
    bundle = make_key()
    lines = []
    with httpx.stream(
        "POST",
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4,
              "provider": {"sort": "price"}},
        headers=bundle.headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    comments = [line for line in lines[:first_data] if line == ": OPENROUTER PROCESSING"]
    assert len(comments) >= 2
    assert lines[-1] == "data: [DONE]"


def test_legacy_and_unknown_fields_are_accepted(gateway, simulator):
    slug, endpoints = multi_provider_model()
    bundle = make_key()
    response = chat(
        gateway,
        bundle,
        model=slug,
        max_tokens=5,
        usage={"include": True},
        stream_options={"include_usage": True},
        transforms=["middle-out"],
        route="fallback",
        include_reasoning=False,
        some_future_field={"x": 1},
        user="end-user-42",
    )
    assert response.status_code == 200, response.text
    sent = simulator.last_request(endpoints[0].provider.slug)
    for field in ("usage", "transforms", "route", "include_reasoning", "models", "provider"):
        assert field not in sent
    assert sent["model"] == endpoints[0].upstream_model_id
    assert sent["user"] != "end-user-42"  # hashed before it leaves the gateway
    assert sent["max_tokens"] == 5


def test_streaming_request_that_fails_before_any_token_gets_a_json_error(gateway, simulator):
    slug, endpoints = multi_provider_model()
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, fail="502")
    bundle = make_key()
    response = httpx.post(
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=bundle.headers,
        timeout=30,
    )
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == 503


def test_keys_are_stored_only_as_their_sha256(gateway):
    bundle = make_key()
    assert bundle.raw.startswith("sk-or-v1-") and len(bundle.raw) == len("sk-or-v1-") + 64
    stored = ApiKey.objects.get(id=bundle.key.id)
    assert stored.hash == hashlib.sha256(bundle.raw.encode()).hexdigest()
    for field in ApiKey._meta.concrete_fields:
        assert bundle.raw not in str(getattr(stored, field.attname))
    assert stored.label.startswith("sk-or-v1-") and "..." in stored.label


def test_response_model_is_the_catalog_slug_and_chunks_share_the_id(gateway):
    slug, endpoints = multi_provider_model()
    bundle = make_key()
    _response, events = stream_chat(gateway, bundle, {"model": slug, "max_tokens": 3})
    assert {e["model"] for e in events[:-1]} == {slug}
    assert len({e["id"] for e in events[:-1]}) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_provider_timeout_falls_back(gateway, simulator, settings, stream):
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    slug, endpoints = multi_provider_model()
    simulator.set(endpoints[0].provider.slug, fail="timeout")
    bundle = make_key()
    response = httpx.post(
        f"{gateway.api}/chat/completions",
        json={"model": slug, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "max_tokens": 4,
              "provider": {"sort": "price"}},
        headers=bundle.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    if stream:
        provider = stream_events(response)[0]["provider"]
    else:
        provider = response.json()["provider"]
    assert provider == endpoints[1].provider.name
