"""``/api/v1/responses`` answers a client's mistakes with a 400 in the envelope, charges nothing and
never answers 5xx: wrong-typed fields nested anywhere, unknown item and tool types, content parts in the
wrong role, stateful fields on a stateless API, another API's body, ``stream`` as a string."""

from __future__ import annotations

import copy

import httpx
import pytest

from activity.models import Generation
from billing.settlement import settlement_flush
from tests.factories import make_key
from tests.hostile.probe import responses_body
from tests.openapi import validate_response

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"


def _with(path: str, value):
    """The probe's valid body with one (dotted, indexed) field replaced; ``...`` deletes it."""
    body = copy.deepcopy(responses_body(MODEL))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = body
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


BAD_BODIES = {
    "stream as a string": _with("stream", "true"),
    "store true": _with("store", True),
    "store as a string": _with("store", "false"),
    "previous_response_id": _with("previous_response_id", "resp_123"),
    "conversation": _with("conversation", "conv_1"),
    "background": _with("background", True),
    "input missing": _with("input", ...),
    "input a number": _with("input", 5),
    "input empty": _with("input", []),
    "item not an object": _with("input.0", "hi"),
    "unknown item type": _with("input.0.type", "local_shell_call"),
    "item_reference": _with("input.0", {"type": "item_reference", "id": "msg_1"}),
    "unknown role": _with("input.1.role", "robot"),
    "content a number": _with("input.1.content", 7),
    "unknown part type": _with("input.1.content.0.type", "input_video_frame"),
    "text not a string": _with("input.1.content.0.text", ["hi"]),
    "output_text in a user message": _with("input.1.content.0.type", "output_text"),
    "image in an assistant message": {"model": MODEL, "input": [
        {"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
    "image url not a string": _with("input.1.content.1.image_url", {"url": 5}),
    "image by stored file id": _with("input.1.content.1", {"type": "input_image", "file_id": "file_1"}),
    "reasoning summary wrong type": _with("input.2.summary", "thinking"),
    "reasoning summary part type": _with("input.2.summary.0.type", "text"),
    "encrypted content not ours, not text": _with("input.2.encrypted_content", 5),
    "forged encrypted content": _with("input.2.encrypted_content", "or1:!!!"),
    "function_call arguments an object": _with("input.3.arguments", {"a": 1}),
    "function_call arguments not JSON": _with("input.3.arguments", "{oops"),
    "function_call without call_id": _with("input.3.call_id", ...),
    "output for an unknown call": _with("input.4.call_id", "call_nobody"),
    "output missing": _with("input.4.output", ...),
    "output a number": _with("input.4.output", 42),
    "custom call input a number": _with("input.5.input", 3),
    "tools not an array": _with("tools", {"type": "function"}),
    "tool without a type": _with("tools.0.type", ...),
    "unknown tool type": _with("tools.0.type", "teleport"),
    "function tool without a name": _with("tools.0.name", ...),
    "function parameters a string": _with("tools.0.parameters", "object"),
    "function strict a string": _with("tools.0.strict", "no"),
    "custom format type": _with("tools.1.format.type", "yaml"),
    "custom grammar syntax": _with("tools.1.format.syntax", "ebnf"),
    "namespace tools not an array": _with("tools.2.tools", "spawn"),
    "namespace holding a hosted tool": _with("tools.2.tools.0", {"type": "web_search"}),
    "tool_choice unknown": _with("tool_choice", "sometimes"),
    "tool_choice function without name": _with("tool_choice", {"type": "function"}),
    "parallel_tool_calls a string": _with("parallel_tool_calls", "yes"),
    "reasoning effort unknown": _with("reasoning.effort", "extreme"),
    "reasoning summary unknown": _with("reasoning.summary", "everything"),
    "reasoning a string": _with("reasoning", "high"),
    "text format type": _with("text.format.type", "xml"),
    "text format schema a string": _with("text.format.schema", "object"),
    "text format without name": _with("text.format.name", ...),
    "text verbosity": _with("text.verbosity", "loud"),
    "max_output_tokens zero": _with("max_output_tokens", 0),
    "max_output_tokens a string": _with("max_output_tokens", "64"),
    "include unknown": _with("include", ["everything"]),
    "include a string": _with("include", "reasoning.encrypted_content"),
    "instructions an array": _with("instructions", ["be brief"]),
    "metadata values not strings": _with("metadata", {"a": 1}),
    "temperature a string": _with("temperature", "hot"),
    "temperature out of range": _with("temperature", 9),
    "provider a string": _with("provider", "openai"),
    "models not strings": _with("models", [1, 2]),
    "service_tier unknown": _with("service_tier", "platinum"),
    "a chat completions body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    "an Anthropic Messages body": {"model": MODEL, "max_tokens": 10, "system": "x",
                                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
}


def test_bad_bodies_are_400s_in_the_envelope_and_charge_nothing(gateway):
    bundle = make_key(credits="5")
    with httpx.Client(timeout=30) as http:
        ok = http.post(f"{gateway.api}/responses", json=responses_body(MODEL), headers=bundle.headers)
        assert ok.status_code == 200, ok.text  # the base body is valid: each case breaks exactly one thing
        settlement_flush()
        bundle.account.refresh_from_db()
        balance = bundle.account.balance
        generations = Generation.objects.filter(account_id=bundle.account.id).count()
        wrong = {}
        for name, body in BAD_BODIES.items():
            response = http.post(f"{gateway.api}/responses", json=body, headers=bundle.headers)
            if response.status_code != 400:
                wrong[name] = (response.status_code, response.text[:200])
                continue
            validate_response("/responses", "post", 400, response.json())
            assert response.json()["error"]["message"]
        assert not wrong, wrong
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == balance
    assert Generation.objects.filter(account_id=bundle.account.id).count() == generations


@pytest.mark.parametrize(("field", "value", "words"), [
    ("store", True, "stateless"),
    ("previous_response_id", "resp_1", "stateless"),
])
def test_stateful_requests_say_the_api_is_stateless(gateway, field, value, words):
    bundle = make_key(credits="5")
    response = httpx.post(f"{gateway.api}/responses", json=_with(field, value), headers=bundle.headers, timeout=30)
    assert response.status_code == 400
    assert words in response.json()["error"]["message"] and field in response.json()["error"]["message"]


def test_codex_extras_are_accepted(gateway):
    """Codex's namespace and web_search tools, client_metadata, developer items with ids, store: false."""
    bundle = make_key(credits="5")
    body = {
        "model": MODEL, "stream": False, "store": False, "max_output_tokens": 32,
        "input": [{"type": "message", "id": "msg_0193", "role": "developer",
                   "content": [{"type": "input_text", "text": "You are Codex."}]},
                  {"type": "message", "id": "msg_0194", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "agents",
                   "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
                  {"type": "web_search", "external_web_access": False},
                  {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark",
                                                                        "definition": "start: x"}}],
        "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "abc", "client_metadata": {"a": "b"},
    }
    response = httpx.post(f"{gateway.api}/responses", json=body, headers=bundle.headers, timeout=30)
    assert response.status_code == 200, response.text
    validate_response("/responses", "post", 200, response.json())
