"""``POST /api/v1/responses`` through the live gateway, with the official ``openai`` SDK's responses API,
against OpenAI-, Anthropic- and Gemini-dialect providers of the simulator: shapes checked against the
spec, every answer charged exactly (balance delta == the sum of the reported costs)."""

from __future__ import annotations

import json

import httpx
import orjson
import pytest
from openai import OpenAI

from billing.money import nanos_to_usd_number
from tests.factories import make_key
from tests.openapi import validate_response, validate_schema
from tests.routing.gateway_helpers import endpoints_of, generation
from tests.routing.test_chat_completions import assert_ledger_consistent, expected_cost, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "anthropic/claude-3.5-haiku"
GEMINI = "google/gemini-2.0-flash-001"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}
CREDITS = 5 * 10**9


def client(server, bundle) -> OpenAI:
    return OpenAI(base_url=server.api, api_key=bundle.raw, max_retries=0, timeout=30)


def route(dialect: str) -> tuple[str, dict, object]:
    """(model, provider preferences, the endpoint that serves it) for a provider of one dialect."""
    if dialect == "openai":
        slug, endpoints = multi_provider_model()
        endpoint = endpoints[0]
    else:
        slug, provider = (CLAUDE, "anthropic") if dialect == "anthropic" else (GEMINI, "google-ai-studio")
        endpoint = next(e for e in endpoints_of(slug) if e.provider.slug == provider)
    return slug, {"order": [endpoint.provider.slug], "allow_fallbacks": False}, endpoint


REASONING = {  # reasoning models with tools, one per dialect
    "openai": ("openai/gpt-oss-120b", "deepinfra"),
    "anthropic": ("anthropic/claude-sonnet-4", "anthropic"),
    "gemini": ("google/gemini-2.5-flash", "google-ai-studio"),
}


def reasoning_route(dialect: str) -> tuple[str, dict, object]:
    slug, provider = REASONING[dialect]
    endpoint = next(e for e in endpoints_of(slug) if e.provider.slug == provider)
    return slug, {"order": [provider], "allow_fallbacks": False}, endpoint


def check_charge(endpoint, response_json: dict) -> int:
    """The reported cost is the endpoint's price for the reported usage, and the generation says the same."""
    usage = response_json["usage"]
    cost = expected_cost(endpoint, {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]})
    assert usage["cost"] == nanos_to_usd_number(cost) and cost > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    record = generation(response_json["id"])
    assert record.cost == cost
    assert record.tokens_prompt == usage["input_tokens"] and record.tokens_completion == usage["output_tokens"]
    return cost


DIALECTS = ["openai", "anthropic", "gemini"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_non_streaming(gateway, simulator, dialect):
    slug, provider, endpoint = route(dialect)
    bundle = make_key(credits="5")
    response = client(gateway, bundle).responses.create(
        model=slug, input="Say hello in five words.", instructions="Be terse.", max_output_tokens=64,
        extra_body={"provider": provider},
    )
    body = response.model_dump(mode="json", exclude_unset=True)
    validate_response("/responses", "post", 200, body)
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("gen-") and response.model == slug
    assert response.output_text
    assert [item.type for item in response.output] == ["message"]
    assert response.instructions == "Be terse."
    cost = check_charge(endpoint, body)
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - cost


def raw_events(server, bundle, body: dict) -> tuple[httpx.Response, list[tuple[str, object]]]:
    """A streamed request read by hand: every (event name, data) pair, ``[DONE]`` last."""
    events: list[tuple[str, object]] = []
    with httpx.stream("POST", f"{server.api}/responses", json={**body, "stream": True}, headers=bundle.headers,
                      timeout=30) as response:
        if response.status_code != 200:
            response.read()
            return response, events
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                payload = line[6:]
                events.append((name, payload if payload == "[DONE]" else orjson.loads(payload)))
                name = ""
    return response, events


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_streaming_events_follow_the_spec(gateway, simulator, dialect):
    slug, provider, endpoint = route(dialect)
    bundle = make_key(credits="5")
    response, events = raw_events(gateway, bundle, {
        "model": slug, "input": "Say hello in five words.", "max_output_tokens": 64, "provider": provider,
    })
    assert response.status_code == 200, response.text
    assert events[-1] == ("", "[DONE]")
    data = [payload for _, payload in events[:-1]]
    for (name, payload) in events[:-1]:
        assert name == payload["type"]  # each event carries its `event:` line
        validate_schema("StreamEvents", payload)
    assert [payload["sequence_number"] for payload in data] == list(range(len(data)))
    kinds = [payload["type"] for payload in data]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    deltas = "".join(payload["delta"] for payload in data if payload["type"] == "response.output_text.delta")
    done = data[-2]["item"]
    assert deltas and done["content"][0]["text"] == deltas and done["status"] == "completed"
    final = data[-1]["response"]
    validate_response("/responses", "post", 200, final)
    assert final["status"] == "completed" and final["output"] == [done]
    assert final["id"] == response.headers["x-generation-id"]
    cost = check_charge(endpoint, final)
    assert generation(final["id"]).streamed
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - cost


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sdk_stream_helper_gives_the_final_response(gateway, simulator, dialect):
    slug, provider, endpoint = route(dialect)
    bundle = make_key(credits="5")
    with client(gateway, bundle).responses.stream(
        model=slug, input="Name three rivers.", max_output_tokens=64, extra_body={"provider": provider},
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(deltas)
    cost = check_charge(endpoint, final.model_dump(mode="json"))
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - cost


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_function_calling_round_trip(gateway, simulator, dialect, streaming):
    """The model calls the tool; the SDK's own output items go back with the tool's output (stateless)."""
    slug, provider, endpoint = route(dialect)
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    history: list = [{"role": "user", "content": "What is the weather in Paris? [sim:tool=get_weather]"}]
    kwargs = {"model": slug, "tools": [WEATHER], "max_output_tokens": 200, "extra_body": {"provider": provider}}
    if streaming:
        with sdk.responses.stream(input=history, **kwargs) as stream:
            events = [event.type for event in stream]
            first = stream.get_final_response()
        assert "response.function_call_arguments.delta" in events and "response.function_call_arguments.done" in events
    else:
        first = sdk.responses.create(input=history, **kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and first.status == "completed"
    arguments = json.loads(calls[0].arguments)
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in {"c", "f"}
    validate_response("/responses", "post", 200, first.model_dump(mode="json", exclude_unset=True))
    history += [item.model_dump(mode="json", exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees, sunny"})
    second = sdk.responses.create(input=history, **kwargs)
    assert second.status == "completed" and second.output_text
    upstream = simulator.last_request(endpoint.provider.slug)
    text = json.dumps(upstream)
    assert "18 degrees, sunny" in text and calls[0].call_id.split("_")[-1][:6] in text or "18 degrees" in text
    costs = [check_charge(endpoint, first.model_dump(mode="json")), check_charge(endpoint, second.model_dump(mode="json"))]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - sum(costs)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_reasoning_items_come_back_and_go_upstream_again(gateway, simulator, dialect, streaming):
    slug, provider, endpoint = reasoning_route(dialect)
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    kwargs = {
        "model": slug, "max_output_tokens": 4000, "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"], "store": False, "extra_body": {"provider": provider},
    }
    history: list = [{"role": "user", "content": "Think, then answer: why is the sky blue?"}]
    if streaming:
        with sdk.responses.stream(input=history, **kwargs) as stream:
            events = [event.type for event in stream]
            first = stream.get_final_response()
        assert "response.reasoning_summary_text.delta" in events
    else:
        first = sdk.responses.create(input=history, **kwargs)
    assert [item.type for item in first.output] == ["reasoning", "message"]
    reasoning = first.output[0]
    assert reasoning.summary and reasoning.summary[0].text and reasoning.encrypted_content
    assert first.usage.output_tokens_details.reasoning_tokens >= 0
    history += [item.model_dump(mode="json", exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "And at sunset?"})
    second = sdk.responses.create(input=history, **kwargs)
    assert second.status == "completed"
    upstream = json.dumps(simulator.last_request(endpoint.provider.slug))
    if dialect == "anthropic":  # the thinking block went back signed, as Anthropic requires
        assert '"signature"' in upstream and reasoning.summary[0].text[:20] in upstream
    costs = [check_charge(endpoint, first.model_dump(mode="json")), check_charge(endpoint, second.model_dump(mode="json"))]
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - sum(costs)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("dialect", ["openai", "gemini"])  # the Anthropic dialect has no structured output here
def test_json_schema_output(gateway, simulator, dialect, streaming):
    slug, provider, endpoint = route("openai") if dialect == "openai" else reasoning_route("gemini")
    bundle = make_key(credits="5")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"], "additionalProperties": False,
    }
    text = {"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}}
    sdk = client(gateway, bundle)
    kwargs = {"model": slug, "input": "Invent a person.", "text": text, "max_output_tokens": 200,
              "extra_body": {"provider": provider}}
    if streaming:
        with sdk.responses.stream(**kwargs) as stream:
            response = stream.get_final_response()
    else:
        response = sdk.responses.create(**kwargs)
    person = json.loads(response.output_text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    upstream = simulator.last_request(endpoint.provider.slug)
    if dialect == "openai":
        assert upstream["response_format"] == {
            "type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True},
        }
    else:
        assert upstream["generationConfig"]["responseJsonSchema"] == schema
    assert response.text.format.type == "json_schema"
    check_charge(endpoint, response.model_dump(mode="json"))


def test_a_provider_dropping_mid_stream_ends_in_response_failed(gateway, simulator):
    """After the first token there is no fallback: the stream still ends with a terminal event (Codex
    otherwise reports "stream closed before response.completed"), and what was delivered is charged."""
    slug, provider, endpoint = route("openai")
    simulator.set(endpoint.provider.slug, fail="drop", drop_after_chunks=3)
    bundle = make_key(credits="5")
    response, events = raw_events(gateway, bundle, {
        "model": slug, "input": "Tell me a long story. [sim:tokens=40]", "max_output_tokens": 64, "provider": provider,
    })
    assert response.status_code == 200
    assert events[-1] == ("", "[DONE]")
    last = events[-2][1]
    assert last["type"] == "response.failed", [name for name, _ in events]
    validate_schema("StreamEvents", last)
    assert last["response"]["status"] == "failed" and last["response"]["error"]["code"] == "server_error"
    assert "response.output_item.done" in [name for name, _ in events]  # the partial message is closed
    record = generation(last["response"]["id"])
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == CREDITS - record.cost


def test_insufficient_credits_is_a_402_in_the_envelope(gateway):
    slug, provider, _ = route("openai")
    bundle = make_key(credits="0")
    response = httpx.post(f"{gateway.api}/responses", headers=bundle.headers, timeout=30, json={
        "model": slug, "input": "hi", "stream": True, "provider": provider,
    })
    assert response.status_code == 402
    validate_response("/responses", "post", 402, response.json())


def test_another_accounts_generation_is_not_visible(gateway):
    """The response id is the generation id: its owner reads it at /generation, another account gets a 404."""
    slug, provider, _ = route("openai")
    owner, other = make_key(credits="5"), make_key(credits="5")
    body = httpx.post(f"{gateway.api}/responses", headers=owner.headers, timeout=30,
                      json={"model": slug, "input": "hi", "provider": provider}).json()
    settle = generation(body["id"])
    assert settle.account_id == owner.account.id
    mine = httpx.get(f"{gateway.api}/generation", params={"id": body["id"]}, headers=owner.headers, timeout=30)
    theirs = httpx.get(f"{gateway.api}/generation", params={"id": body["id"]}, headers=other.headers, timeout=30)
    assert mine.status_code == 200 and mine.json()["data"]["id"] == body["id"]
    assert theirs.status_code == 404


@pytest.mark.parametrize("streaming", [False, True])
def test_a_cut_answer_is_incomplete(gateway, simulator, streaming):
    slug, provider, endpoint = route("openai")
    bundle = make_key(credits="5")
    body = {"model": slug, "input": "Tell me a story. [sim:tokens=30]", "max_output_tokens": 5, "provider": provider}
    if streaming:
        response, events = raw_events(gateway, bundle, body)
        assert events[-1] == ("", "[DONE]")
        name, last = events[-2]
        assert name == "response.incomplete"
        validate_schema("StreamEvents", last)
        result = last["response"]
    else:
        response = httpx.post(f"{gateway.api}/responses", json=body, headers=bundle.headers, timeout=30)
        result = response.json()
        validate_response("/responses", "post", 200, result)
    assert result["status"] == "incomplete" and result["incomplete_details"] == {"reason": "max_output_tokens"}
    assert result["usage"]["output_tokens"] == 5
    check_charge(endpoint, result)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_custom_tool_call_streams_as_a_custom_tool_call_item(gateway, simulator, dialect):
    """Codex's freeform ``apply_patch``: the model's call comes back as ``custom_tool_call`` with raw input."""
    slug, provider, endpoint = route(dialect)
    bundle = make_key(credits="5")
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    response, events = raw_events(gateway, bundle, {
        "model": slug, "input": "Fix the bug. [sim:tool=apply_patch]", "tools": [tool], "max_output_tokens": 200,
        "provider": provider,
    })
    assert response.status_code == 200
    for _, payload in events[:-1]:
        validate_schema("StreamEvents", payload)
    done = [payload["item"] for name, payload in events[:-1] if name == "response.output_item.done"]
    calls = [item for item in done if item["type"] == "custom_tool_call"]
    assert len(calls) == 1 and calls[0]["name"] == "apply_patch" and isinstance(calls[0]["input"], str)
    assert calls[0]["input"] and not calls[0]["input"].startswith("{")  # the raw input, not our JSON wrapper
    final = events[-2][1]["response"]
    assert final["status"] == "completed" and final["output"] == done
    check_charge(endpoint, final)
