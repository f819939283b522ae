"""The account's privacy defaults (settings page) apply to every request through the gateway; a request's
own ``provider`` object narrows them and can never widen them."""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.services import account_privacy_update
from tests.factories import make_key
from tests.routing.gateway_helpers import error_of, post

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"  # DeepInfra, Groq, Cerebras, Together, Fireworks: all ZDR
DEEPSEEK = "deepseek/deepseek-chat-v3-0324"  # DeepSeek trains on prompts; the others do not


def privacy(account, **changes):
    fields = dict(allow_training_paid=True, allow_training_free=True, zdr_only=False, allowed_providers=[],
                  ignored_providers=[], allow_training_discount=False) | changes
    with transaction.atomic():
        account_privacy_update(account=account, **fields)


def availability(response) -> dict:
    return error_of(response)["metadata"]["availability"]


def test_zdr_only_refuses_a_model_without_zdr_endpoints_and_a_request_cannot_widen_it(gateway, simulator):
    bundle = make_key(credits="5")
    assert post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3}).status_code == 200
    privacy(bundle.account, zdr_only=True)
    response = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3})
    assert response.status_code == 404
    assert availability(response)["code"] == "privacy_restricted"
    widened = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3, "provider": {"zdr": False}})
    assert widened.status_code == 404 and availability(widened)["code"] == "privacy_restricted"
    assert post(gateway, bundle, {"model": LLAMA, "max_tokens": 3}).status_code == 200
    privacy(bundle.account, zdr_only=False)
    assert post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3}).status_code == 200


def test_no_training_on_paid_models_skips_training_providers_even_when_asked_for(gateway, simulator):
    bundle = make_key(credits="5")
    privacy(bundle.account, allow_training_paid=False)
    for _ in range(3):
        response = post(gateway, bundle, {"model": DEEPSEEK, "max_tokens": 3, "provider": {"order": ["deepseek"]}})
        assert response.status_code == 200 and response.json()["provider"] != "DeepSeek"
    assert simulator.stats("deepseek")["requests"] == 0
    only = post(gateway, bundle, {"model": DEEPSEEK, "max_tokens": 3, "provider": {"only": ["deepseek"]}})
    assert only.status_code == 404 and availability(only)["code"] == "privacy_restricted"


def test_allowed_and_ignored_providers_are_a_ceiling(gateway, simulator):
    bundle = make_key(credits="5")
    privacy(bundle.account, allowed_providers=["groq"])
    for _ in range(3):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"order": ["deepinfra"]}})
        assert response.status_code == 200 and response.json()["provider"] == "Groq"
    outside = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 3})
    assert outside.status_code == 404 and availability(outside)["code"] == "privacy_restricted"
    privacy(bundle.account, ignored_providers=["groq", "deepinfra"])
    for _ in range(3):
        response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 3, "provider": {"only": ["groq", "cerebras"]}})
        assert response.status_code == 200 and response.json()["provider"] == "Cerebras"
