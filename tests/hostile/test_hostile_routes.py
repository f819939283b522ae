"""Every route of the running platform answers hostile input without a 5xx (issue 7 §2).

The routes and the hostile classes are listed in ``tests/hostile/probe.py``; a failure lists
every (route, input) pair that got a 5xx or a 400/413 outside the error envelope.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.guardrails import guardrail_create
from accounts.services import provider_key_create
from billing.models import Purchase
from routing.models import Provider
from tests.factories import make_key
from tests.hostile.probe import CHAT_MODELS, Identities, probe, routes

pytestmark = pytest.mark.django_db(transaction=True)


def identities() -> tuple[Identities, dict]:
    bundle = make_key(credits="5")
    manager = make_key(account=bundle.account, management=True)
    patched = make_key(account=bundle.account, name="patched by the probe")  # PATCH may disable it
    get_user_model().objects.filter(id=bundle.account.owner_id).update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(bundle.account.owner)
    purchase = Purchase.objects.create(account=bundle.account, method="card", credits=10**10, fee=0, total_cents=1000)
    byok = provider_key_create(account=bundle.account, provider=Provider.objects.get(slug="openai"),
                               key="sk-probe-0123456789", name="probe")
    guardrail = guardrail_create(account=bundle.account, name="probed")
    ids = {"key_hash": patched.key.hash, "byok_id": str(byok.id), "account_id": bundle.account.id,
           "purchase_id": purchase.id, "key_id": patched.key.id, "guardrail_id": str(guardrail.id)}
    return Identities(key=bundle.raw, management=manager.raw, session_cookie=client.cookies["sessionid"].value), ids


@pytest.mark.timeout(900)
def test_no_route_answers_hostile_input_with_a_5xx(gateway):
    who, ids = identities()
    baselines: dict = {}
    sent, failures = probe(gateway.url, who, routes(**ids), max_body=settings.GATEWAY_MAX_BODY_BYTES, baselines=baselines)
    print(f"PROBE: {sent} hostile requests to {len(routes(**ids))} routes and 2 webhooks, {len(failures)} failures")
    report = "\n".join(str(f) for f in failures)
    assert not failures, f"{len(failures)} of {sent} hostile requests failed:\n{report}"
    # The valid bodies the fuzzing starts from are accepted, so the hostile fields reach deep code.
    chats = {model: status for (method, path, model), status in baselines.items() if path.endswith("/chat/completions")}
    assert chats == {model: 200 for model in CHAT_MODELS}, chats
    responses = {model: status for (method, path, model), status in baselines.items() if path == "/api/v1/responses"}
    assert responses == {model: 200 for model in CHAT_MODELS}, responses
    messages = {model: status for (method, path, model), status in baselines.items() if path == "/api/v1/messages"}
    assert messages == {model: 200 for model in CHAT_MODELS}, messages
    assert baselines[("POST", "/api/v1/messages/count_tokens", "openai/gpt-4o-mini")] == 200, baselines
    assert baselines[("POST", "/api/v1/keys", "")] == 201, baselines
    assert baselines[("POST", "/api/v1/auth/keys/code", "")] == 200, baselines
