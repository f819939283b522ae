"""Bad input to ``POST /api/v1/messages`` and ``/messages/count_tokens``: a 400 in Anthropic's envelope
naming the field, before any provider is tried, and nothing charged."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings

from activity.models import Generation
from tests.factories import make_key
from tests.openapi import validate_response
from tests.routing.test_chat_completions import assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
COUNTED = {"messages", "system", "tools", "tool_choice", "thinking"}
# (what is wrong, the field the message must name, the body's fields)
BAD = [
    ("no messages", "messages", {}),
    ("messages not a list", "messages", {"messages": "hi"}),
    ("unknown role", "messages[0].role", {"messages": [{"role": "tool", "content": "x"}]}),
    ("content a number", "messages[0].content", {"messages": [{"role": "user", "content": 5}]}),
    ("block not an object", "messages[0].content[0]", {"messages": [{"role": "user", "content": [5]}]}),
    ("unknown block type", "messages[0].content[0].type", {"messages": [{"role": "user", "content": [{"type": "video"}]}]}),
    ("tool_use from the user", "messages[0].content[0].type",
     {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
    ("thinking from the user", "messages[0].content[0].type",
     {"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]}),
    ("tool_result from the assistant", "messages[1].content[0].type",
     {"messages": [*HI, {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]}),
    ("image without source", "messages[0].content[0].source", {"messages": [{"role": "user", "content": [{"type": "image"}]}]}),
    ("tool_use input a string", "messages[1].content[0].input",
     {"messages": [*HI, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]}),
    ("tool_result without id", "tool_use_id", {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
    ("text block text a list", "messages[0].content[0].text",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]}),
    ("cache_control a string", "cache_control",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": "ephemeral"}]}]}),
    ("stream a string", "stream", {"messages": HI, "stream": "true"}),
    ("max_tokens a string", "max_tokens", {"messages": HI, "max_tokens": "10"}),
    ("max_tokens zero", "max_tokens", {"messages": HI, "max_tokens": 0}),
    ("temperature too high", "temperature", {"messages": HI, "temperature": 1.5}),
    ("system a number", "system", {"messages": HI, "system": 5}),
    ("system block of an image", "system[0].type", {"messages": HI, "system": [{"type": "image"}]}),
    ("tools not a list", "tools", {"messages": HI, "tools": {"name": "f"}}),
    ("tool without input_schema", "tools[0].input_schema", {"messages": HI, "tools": [{"name": "f"}]}),
    ("tool input_schema a string", "tools[0].input_schema", {"messages": HI, "tools": [{"name": "f", "input_schema": "x"}]}),
    ("tool of an unknown type", "tools[0].type", {"messages": HI, "tools": [{"type": "bash_20250124", "name": "bash"}]}),
    ("tool_choice a string", "tool_choice", {"messages": HI, "tool_choice": "auto"}),
    ("tool_choice tool without name", "tool_choice.name", {"messages": HI, "tool_choice": {"type": "tool"}}),
    ("thinking of an unknown type", "thinking", {"messages": HI, "thinking": {"type": "always"}}),
    ("thinking budget a string", "thinking.budget_tokens", {"messages": HI, "thinking": {"type": "enabled", "budget_tokens": "x"}}),
    ("stop_sequences a string", "stop_sequences", {"messages": HI, "stop_sequences": "\n"}),
    ("metadata.user_id a number", "metadata.user_id", {"messages": HI, "metadata": {"user_id": 5}}),
    ("output_config.effort unknown", "output_config.effort", {"messages": HI, "output_config": {"effort": "extreme"}}),
    ("provider a string", "provider", {"messages": HI, "provider": "openai"}),
    ("models not a list", "models", {"messages": HI, "models": "openai/gpt-4o-mini"}),
    ("session_id a number", "session_id", {"messages": HI, "session_id": 5}),
    ("a Responses body", "input", {"input": "hi", "instructions": "be brief"}),
    ("a chat body with a tool message", "messages[1].role",
     {"messages": [*HI, {"role": "tool", "tool_call_id": "c", "content": "42"}]}),
    ("a legacy completion body", "prompt", {"prompt": "Once upon a time"}),
]


def post(server, bundle, body: dict, path: str = "messages") -> httpx.Response:
    return httpx.post(f"{server.api}/{path}", json=body, headers={"x-api-key": bundle.raw}, timeout=30)


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert isinstance(body["request_id"], str) and body["request_id"] == response.headers["x-generation-id"]
    validate_response("/messages", "post", status, body)
    return body["error"]["message"]


@pytest.mark.parametrize(("case", "field", "fields"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_is_a_400_naming_the_field_and_charges_nothing(gateway, simulator, case, field, fields):
    bundle = make_key(credits="1")
    body = {"model": "anthropic/claude-3.5-haiku", "max_tokens": 5, **fields}
    message = anthropic_error(post(gateway, bundle, body), 400, "invalid_request_error")
    assert field in message, (case, message)
    if set(fields) <= COUNTED:  # count_tokens reads these fields with the same parser
        counted = post(gateway, bundle, body, "messages/count_tokens")
        assert field in anthropic_error(counted, 400, "invalid_request_error"), case
    assert simulator.stats("anthropic")["requests"] == 0
    assert not Generation.objects.filter(account=bundle.account).exists()
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 10**9


def test_missing_model_broken_json_and_bad_keys(gateway):
    bundle = make_key(credits="1")
    assert "model" in anthropic_error(post(gateway, bundle, {"messages": HI, "max_tokens": 5}), 400,
                                      "invalid_request_error")
    broken = httpx.post(f"{gateway.api}/messages", content=b'{"model": ', headers={"x-api-key": bundle.raw}, timeout=10)
    anthropic_error(broken, 400, "invalid_request_error")
    nobody = httpx.post(f"{gateway.api}/messages", json={"model": "openai/gpt-4o-mini", "messages": HI}, timeout=10)
    anthropic_error(nobody, 401, "authentication_error")
    manager = make_key(management=True)
    anthropic_error(post(gateway, manager, {"model": "openai/gpt-4o-mini", "messages": HI}), 403, "permission_error")
    too_big = httpx.post(f"{gateway.api}/messages", content=b"x" * (settings.GATEWAY_MAX_BODY_BYTES + 10),
                         headers={"x-api-key": bundle.raw}, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"
    got = httpx.get(f"{gateway.api}/messages", headers={"x-api-key": bundle.raw}, timeout=10)
    assert got.status_code == 405 and got.json()["type"] == "error"
