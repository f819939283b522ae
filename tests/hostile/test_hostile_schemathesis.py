"""Schemathesis against the live server with OpenRouter's official spec (issue 7 §2).

Every operation of ``tests/data/openrouter-openapi.yaml`` that the platform implements (the list
``OPERATIONS``; the spec has many more that we do not serve, see ``NOT_IMPLEMENTED``) gets
generated requests — valid ones (positive mode) and invalid ones (negative mode) — sent over real
HTTP to the live server, and every answer must pass three checks: not a server error, the body
conforms to the spec's response schema for its status, and the content type is the documented one.

The number of examples per operation is bounded (``SCHEMATHESIS_EXAMPLES``, default 25 per mode)
so the whole module runs in a few minutes. Path parameters are replaced, half of the time, by ids
that exist (a model, a key, a BYOK key), so the generated queries and bodies reach real objects
rather than only ever meeting a 404.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.services import provider_key_create
from presets.services import preset_version_create
from routing.models import Provider
from tests.factories import make_key
from tests.openapi import SPEC_PATH, validate_response

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

# (method, spec path, who calls it: "key" for an inference key, "management" for a management key, "none").
OPERATIONS = [
    ("GET", "/models", "none"),
    ("GET", "/models/count", "none"),
    ("GET", "/models/{author}/{slug}/endpoints", "none"),
    ("GET", "/model/{author}/{slug}", "none"),
    ("GET", "/providers", "none"),
    ("GET", "/key", "key"),
    ("GET", "/credits", "management"),
    ("GET", "/generation", "key"),
    ("GET", "/activity", "management"),
    ("GET", "/keys", "management"),
    ("POST", "/keys", "management"),
    ("GET", "/keys/{hash}", "management"),
    ("PATCH", "/keys/{hash}", "management"),
    ("DELETE", "/keys/{hash}", "management"),
    ("GET", "/byok", "management"),
    ("POST", "/byok", "management"),
    ("GET", "/byok/{id}", "management"),
    ("PATCH", "/byok/{id}", "management"),
    ("DELETE", "/byok/{id}", "management"),
    ("POST", "/chat/completions", "key"),
    ("POST", "/auth/keys", "none"),
    ("POST", "/auth/keys/code", "key"),
    ("POST", "/responses", "key"),
    ("POST", "/embeddings", "key"),
    ("GET", "/embeddings/models", "none"),
    ("GET", "/models/user", "key"),
    ("GET", "/endpoints/zdr", "none"),
    ("GET", "/generation/content", "key"),
    ("GET", "/presets", "key"),
    ("GET", "/presets/{slug}", "key"),
    ("GET", "/presets/{slug}/versions", "key"),
    ("GET", "/presets/{slug}/versions/{version}", "key"),
    ("POST", "/presets/{slug}/chat/completions", "key"),
    ("POST", "/messages", "key"),
]
# Everything else in the spec (files, guardrails, workspaces, analytics, ...) is not served by this
# platform yet: those paths answer 404 in the
# envelope, which is not a conformance question.


def _is_event_stream(response) -> bool:
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or ""
    value = value[0] if isinstance(value, list) and value else value
    return isinstance(value, str) and value.startswith("text/event-stream")


def _sse_data(text: str) -> list:
    """The JSON of each SSE event's ``data`` (comments and ``[DONE]`` left out)."""
    events = []
    for block in text.split("\n\n"):
        lines = [line[5:].strip() for line in block.split("\n") if line.startswith("data:")]
        if lines and lines != ["[DONE]"]:
            events.append(json.loads("\n".join(lines)))
    return events


@pytest.fixture(scope="module")
def schema():
    return schemathesis.openapi.from_path(SPEC_PATH)


def _fixtures() -> dict:
    bundle = make_key(credits="50")
    manager = make_key(account=bundle.account, management=True)
    patched = make_key(account=bundle.account, name="patched by schemathesis")
    byok = provider_key_create(account=bundle.account, provider=Provider.objects.get(slug="openai"),
                               key="sk-schemathesis-0123456789", name="schemathesis")
    preset_version_create(account=bundle.account, slug="schemathesis", config={"model": "openai/gpt-4o-mini"},
                          system_prompt="s")
    return {"bundle": bundle, "manager": manager, "patched": patched, "byok": byok}


def _real_path_parameters(method: str, path: str, fixtures: dict) -> dict:
    """Ids that exist, for the operation's path parameters (a fresh one where the call deletes it)."""
    if "{author}" in path:
        return {"author": "openai", "slug": "gpt-4o-mini"}
    if path.startswith("/presets/"):
        return {"slug": "schemathesis", **({"version": "1"} if "{version}" in path else {})}
    account = fixtures["bundle"].account
    if "{hash}" in path:
        key = make_key(account=account, name="deleted by schemathesis") if method == "DELETE" else fixtures["patched"]
        return {"hash": key.key.hash}
    if "{id}" in path:
        if method == "DELETE":
            fresh = provider_key_create(account=account, provider=Provider.objects.get(slug="openai"),
                                        key="sk-schemathesis-delete-0123", name="deleted by schemathesis")
            return {"id": str(fresh.id)}
        return {"id": str(fixtures["byok"].id)}
    return {}


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("method", "path", "auth"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_operation_conforms_to_the_spec(gateway, schema, method, path, auth):
    fixtures = _fixtures()
    headers = {}
    if auth == "key":
        headers["Authorization"] = f"Bearer {fixtures['bundle'].raw}"
    elif auth == "management":
        headers["Authorization"] = f"Bearer {fixtures['manager'].raw}"
    operation = schema[path][method]
    ran = {"examples": 0}

    def check(case, use_real_ids: bool) -> None:
        if use_real_ids and case.path_parameters:
            case.path_parameters = {**case.path_parameters, **_real_path_parameters(method, path, fixtures)}
        response = case.call(base_url=gateway.api, headers=headers, timeout=60)
        ran["examples"] += 1
        ran.setdefault("statuses", []).append(response.status_code)
        if os.environ.get("SCHEMATHESIS_DEBUG"):
            print(method, path, response.status_code, response.text[:150])
        if _is_event_stream(response):
            # Schemathesis checks each SSE event's raw text against the event's object schema (the spec names
            # no contentMediaType for it), so every good stream would fail: the other checks run as usual,
            # and each event's JSON is checked against the spec's event schema here.
            case.validate_response(response, checks=[not_a_server_error, content_type_conformance], headers=headers)
            if path == "/chat/completions" and response.status_code == 200:
                for event in _sse_data(response.text):
                    validate_response(path, "post", 200, {"data": event}, content_type="text/event-stream")
            return
        case.validate_response(response, checks=CHECKS, headers=headers)

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode), use_real_ids=st.booleans())
        def run(case, use_real_ids):
            check(case, use_real_ids)

        run()
    statuses = sorted(set(ran.get("statuses", [])))
    print(f"SCHEMATHESIS {method} {path}: {ran['examples']} requests, statuses {statuses}")
    assert ran["examples"] >= 1
