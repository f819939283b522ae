"""``POST /api/v1/messages`` (Anthropic's Messages API) through the live gateway, driven by the official
``anthropic`` SDK, against an OpenAI-, an Anthropic- and a Gemini-dialect provider of the simulator:
shapes checked against the spec's ``#MessagesResult`` and stream events, charges exact."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest

from billing.money import nanos_to_usd_number
from tests.factories import KeyBundle, make_account, make_key
from tests.openapi import validate_response, validate_schema
from tests.routing.gateway_helpers import generation
from tests.routing.test_chat_completions import assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)

# (model, provider slug, provider name): one per dialect the simulator speaks.
DIALECTS = {
    "openai": ("openai/gpt-4o-mini", "openai", "OpenAI"),
    "anthropic": ("anthropic/claude-3.5-haiku", "anthropic", "Anthropic"),
    "gemini": ("google/gemini-2.0-flash-001", "google-ai-studio", "Google AI Studio"),
}
# Models that think, one per dialect.
THINKERS = {
    "openai": ("deepseek/deepseek-r1", "deepseek"),
    "anthropic": ("anthropic/claude-3.7-sonnet", "anthropic"),
    "gemini": ("google/gemini-2.5-flash", "google-ai-studio"),
}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(server, bundle: KeyBundle) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{server.url}/api", api_key=bundle.raw, max_retries=0, timeout=30)


def only(provider: str) -> dict:
    return {"extra_body": {"provider": {"only": [provider]}}}


def spent(bundle: KeyBundle) -> int:
    assert_ledger_consistent(bundle.account)
    return 5 * 10**9 - bundle.account.balance


def check_message(message: anthropic.types.Message) -> dict:
    body = message.to_dict()
    validate_response("/messages", "post", 200, body)
    record = generation(message.id)
    assert body["usage"]["cost"] == nanos_to_usd_number(record.cost) and record.cost > 0
    prompt = body["usage"]["input_tokens"] + body["usage"]["cache_read_input_tokens"]
    prompt += body["usage"]["cache_creation_input_tokens"]
    assert record.tokens_prompt == prompt and record.tokens_completion == body["usage"]["output_tokens"]
    return body


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_answers_a_message_and_charges_its_cost(gateway, simulator, dialect):
    model, provider, name = DIALECTS[dialect]
    bundle = make_key(credits="5")
    message = client(gateway, bundle).messages.create(
        model=model,
        max_tokens=32000,  # as Claude Code asks: each endpoint gets at most its own output limit
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Name three rivers."}],
        **only(provider),
    )
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("gen-")
    assert message.model == model and message.stop_reason in {"end_turn", "max_tokens"}
    assert message.content[0].type == "text" and message.content[0].text
    body = check_message(message)
    assert body["provider"] == name
    upstream = simulator.last_request(provider)
    if dialect == "anthropic":
        assert upstream["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
        assert upstream["max_tokens"] == 8192  # the endpoint's limit, not 32000
    elif dialect == "openai":
        assert upstream["messages"][0]["role"] == "system" and upstream["max_tokens"] == 16384
    else:
        assert "systemInstruction" in upstream
    assert spent(bundle) == generation(message.id).cost


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_stream_delivers_every_event_with_its_name(gateway, simulator, dialect):
    model, provider, name = DIALECTS[dialect]
    bundle = make_key(credits="5")
    with client(gateway, bundle).messages.stream(
        model=model, max_tokens=20, messages=[{"role": "user", "content": "Tell me a story."}], **only(provider)
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason in {"end_turn", "max_tokens"} and final.usage.output_tokens > 0
    record = generation(final.id)
    assert record.streamed and record.cost > 0 and record.tokens_completion == final.usage.output_tokens
    assert final.model_extra["provider"] == name  # from message_start
    assert spent(bundle) == record.cost

    # The raw wire: an ``event:`` line before every ``data:`` line, and the spec's shapes.
    events = raw_stream(gateway, bundle, {"model": model, "max_tokens": 8, "provider": {"only": [provider]},
                                          "messages": [{"role": "user", "content": "Hi"}]})
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    for kind, data in events:
        assert data["type"] == kind
        validate_schema("MessagesStreamingResponse", {"event": kind, "data": data})
    usage = events[-2][1]["usage"]
    record = generation(events[0][1]["message"]["id"])
    assert usage["cost"] == nanos_to_usd_number(record.cost) and usage["output_tokens"] == record.tokens_completion


def raw_stream(server, bundle: KeyBundle, body: dict) -> list[tuple[str, dict]]:
    events = []
    kind = None
    with httpx.stream("POST", f"{server.api}/messages", json={**body, "stream": True},
                      headers={"x-api-key": bundle.raw, "anthropic-version": "2023-06-01"}, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                assert kind is None, "two event lines in a row"
                kind = line[7:]
            elif line.startswith("data: "):
                assert kind is not None, f"a data line without its event line: {line}"
                events.append((kind, orjson.loads(line[6:])))
                kind = None
    return events


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("streaming", [False, True])
def test_tool_use_round_trip(gateway, simulator, dialect, streaming):
    model, provider, _ = DIALECTS[dialect]
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    messages = [{"role": "user", "content": "What is the weather in Paris? [sim:tool=get_weather]"}]
    if streaming:
        with sdk.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=messages,
                                 **only(provider)) as stream:
            first = stream.get_final_message()
    else:
        first = sdk.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages, **only(provider))
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and isinstance(calls[0].input, dict)
    if not streaming:
        check_message(first)

    messages += [
        {"role": "assistant", "content": first.content},  # the docs' pattern: the blocks as they came
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "Sunny, 21 C",
                                      "cache_control": {"type": "ephemeral"}}]},
    ]
    second = sdk.messages.create(model=model, max_tokens=50, tools=[WEATHER], messages=messages, **only(provider))
    assert second.stop_reason in {"end_turn", "max_tokens"} and second.content[0].type == "text"
    check_message(second)
    upstream = simulator.last_request(provider)
    if dialect == "anthropic":
        assert upstream["messages"][1]["content"][-1]["type"] == "tool_use"
        result = upstream["messages"][2]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == calls[0].id
        assert result["content"][0]["cache_control"] == {"type": "ephemeral"}
    elif dialect == "openai":
        assert upstream["messages"][1]["tool_calls"][0]["id"] == calls[0].id
        assert upstream["messages"][2]["role"] == "tool"
    else:
        assert "functionResponse" in str(upstream["contents"])
    assert spent(bundle) == generation(first.id).cost + generation(second.id).cost


@pytest.mark.parametrize("dialect", THINKERS)
@pytest.mark.parametrize("streaming", [False, True])
def test_thinking_comes_back_as_thinking_blocks(gateway, simulator, dialect, streaming):
    model, provider = THINKERS[dialect]
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    request = {"model": model, "max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 1024},
               "messages": [{"role": "user", "content": "Why is the sky blue?"}], **only(provider)}
    if streaming:
        with sdk.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = sdk.messages.create(**request)
        check_message(message)
    kinds = [block.type for block in message.content]
    assert kinds[0] == "thinking" and "text" in kinds, kinds
    assert message.content[0].thinking
    if dialect == "anthropic":
        assert simulator.last_request(provider)["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        signature = message.content[0].signature
        assert signature
        # Given back on the next turn, the signed thinking reaches Anthropic unchanged.
        follow = {**request, "messages": [*request["messages"], {"role": "assistant", "content": message.content},
                                          {"role": "user", "content": "And at sunset?"}]}
        sdk.messages.create(**follow)
        sent = simulator.last_request(provider)["messages"][1]["content"][0]
        assert sent == {"type": "thinking", "thinking": message.content[0].thinking, "signature": signature}
    record = generation(message.id)
    assert spent(bundle) >= record.cost > 0


def test_count_tokens_is_an_unbilled_upper_bound_with_system_and_tools(gateway):
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    messages = [{"role": "user", "content": "Hello there"}]
    bare = sdk.messages.count_tokens(model="openai/gpt-4o-mini", messages=messages).input_tokens
    with_system = sdk.messages.count_tokens(model="openai/gpt-4o-mini", messages=messages,
                                            system="You are a helpful assistant.").input_tokens
    with_tools = sdk.messages.count_tokens(model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER]).input_tokens
    assert 0 < bare < with_system and bare < with_tools
    assert with_tools - bare >= len(orjson.dumps(WEATHER["input_schema"])) // 3
    # Never below what a provider counts: the simulator's own count of the same prompt.
    message = sdk.messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=messages,
                                  system="You are a helpful assistant.")
    assert with_system >= message.usage.input_tokens
    spent_before = generation(message.id).cost
    response = httpx.post(f"{gateway.api}/messages/count_tokens?beta=true", headers={"x-api-key": bundle.raw},
                          json={"model": "x/y", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    assert spent(bundle) == spent_before  # counting is free
    bad = httpx.post(f"{gateway.api}/messages/count_tokens", headers={"x-api-key": "sk-or-v1-" + "0" * 64},
                     json={"model": "x/y", "messages": messages}, timeout=10)
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"


def test_count_tokens_is_close_to_the_providers_count_not_a_byte_bound(gateway):
    """Claude Code shows (and compacts by) this count: never below the provider's, and not fourfold above."""
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    prose = " ".join(["The quick brown fox jumps over the lazy dog near the quiet riverbank."] * 60)
    messages = [{"role": "user", "content": prose}]
    counted = sdk.messages.count_tokens(model="openai/gpt-4o-mini", messages=messages).input_tokens
    reported = sdk.messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=messages).usage.input_tokens
    assert reported <= counted <= 2 * reported, (counted, reported)
    assert counted < len(prose.encode()) / 2  # the byte bound the credit hold uses would be 4x a real count


def test_errors_are_the_sdk_exception_classes(gateway):
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    hello = [{"role": "user", "content": "Hi"}]
    bad = KeyBundle(raw="sk-or-v1-" + "0" * 64, key=None, account=None)
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(gateway, bad).messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=hello)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gateway, make_key(management=True)).messages.create(model="openai/gpt-4o-mini", max_tokens=5,
                                                                   messages=hello)
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=[{"role": "robot", "content": "x"}])
    assert "messages[0].role" in info.value.message
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(model="nobody/no-such-model", max_tokens=5, messages=hello)
    assert info.value.status_code in (400, 404)
    broke = make_key(account=make_account(credits="0"))
    with pytest.raises(anthropic.APIStatusError) as info:
        client(gateway, broke).messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=hello)
    assert info.value.status_code == 402 and info.value.body["error"]["type"] == "billing_error"
    validate_schema("AnthropicMessagesErrorResponse", info.value.body)  # the spec lists no 402 for /messages
    assert spent(bundle) == 0


def test_rate_limited_everywhere_is_a_rate_limit_error(gateway, simulator):
    model, provider, _ = DIALECTS["anthropic"]
    simulator.set("anthropic", fail="429", retry_after=3)
    bundle = make_key(credits="5")
    with pytest.raises(anthropic.RateLimitError) as info:
        client(gateway, bundle).messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
                                                **only(provider))
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert spent(bundle) == 0


def test_mid_stream_drop_is_an_error_event_and_bills_what_was_delivered(gateway, simulator):
    model, provider, _ = DIALECTS["openai"]
    simulator.set(provider, fail="drop", drop_after_chunks=4, completion_tokens=30)
    bundle = make_key(credits="5")
    events = raw_stream(gateway, bundle, {"model": model, "max_tokens": 40, "provider": {"only": [provider]},
                                          "messages": [{"role": "user", "content": "Hi"}]})
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "message_start" and kinds[-1] == "error" and "message_stop" not in kinds
    assert events[-1][1]["error"]["type"] == "api_error"
    record = generation(events[0][1]["message"]["id"])
    assert record.finish_reason == "error" and record.cost > 0
    assert spent(bundle) == record.cost


def test_claude_code_shaped_request(gateway, simulator):
    """What Claude Code 2.1.x sends: beta query, system blocks with cache_control, a system message LAST,
    adaptive thinking with output_config, context_management, metadata.user_id as a JSON string, tools
    with defer_loading, max_tokens 32000 — answered, and charged."""
    bundle = make_key(credits="5")
    body = {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
                   {"type": "text", "text": "You are Claude Code." * 2000, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Available agent types: none."},
        ],
        "tools": [{**WEATHER, "defer_loading": True}],
        "metadata": {"user_id": orjson.dumps({"device_id": "d", "account_uuid": "", "session_id": "s"}).decode()},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }
    with httpx.stream("POST", f"{gateway.api}/messages?beta=true", json=body, timeout=30,
                      headers={"authorization": f"Bearer {bundle.raw}", "anthropic-version": "2023-06-01",
                               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}) as response:
        assert response.status_code == 200, response.read()
        text = b"".join(response.iter_bytes()).decode()
    assert "event: message_start" in text and "event: content_block_stop" in text and "event: message_stop" in text
    upstream = simulator.last_request("openai")
    assert upstream["messages"][-1]["role"] == "system" and upstream["max_tokens"] == 16384


def test_pings_while_waiting_then_the_events(gateway, simulator, settings):
    settings.GATEWAY_KEEPALIVE_SECONDS = 0.2
    model, provider, _ = DIALECTS["gemini"]
    simulator.set(provider, latency_ms=900)
    bundle = make_key(credits="5")
    events = raw_stream(gateway, bundle, {"model": model, "max_tokens": 4, "provider": {"only": [provider]},
                                          "messages": [{"role": "user", "content": "Hi"}]})
    kinds = [kind for kind, _ in events]
    first = kinds.index("message_start")
    assert first >= 2 and set(kinds[:first]) == {"ping"}, kinds
    assert kinds[-1] == "message_stop"
    # The SDK takes the pings in its stride.
    with client(gateway, bundle).messages.stream(model=model, max_tokens=4, messages=[{"role": "user", "content": "Hi"}],
                                                 **only(provider)) as stream:
        assert "".join(stream.text_stream)


def test_failure_after_pings_is_an_in_band_error_event_and_charges_nothing(gateway, simulator, settings):
    settings.GATEWAY_KEEPALIVE_SECONDS = 0.2
    model, provider, _ = DIALECTS["gemini"]
    simulator.set(provider, latency_ms=700, fail="503")
    bundle = make_key(credits="5")
    events = raw_stream(gateway, bundle, {"model": model, "max_tokens": 4, "provider": {"only": [provider]},
                                          "messages": [{"role": "user", "content": "Hi"}]})
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "ping" and kinds[-1] == "error" and "message_start" not in kinds, kinds
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    validate_schema("MessagesStreamingResponse", {"event": "error", "data": events[-1][1]})
    with pytest.raises(anthropic.APIStatusError):  # the SDK raises it too
        with client(gateway, bundle).messages.stream(model=model, max_tokens=4, **only(provider),
                                                     messages=[{"role": "user", "content": "Hi"}]) as stream:
            "".join(stream.text_stream)
    assert spent(bundle) == 0


def test_generation_lookup_and_unknown_fields(gateway):
    bundle = make_key(credits="5")
    response = httpx.post(f"{gateway.api}/messages", headers={"x-api-key": bundle.raw, "anthropic-version": "2026-10-21"},
                          json={"model": "openai/gpt-4o-mini", "max_tokens": 5, "some_future_field": {"x": 1},
                                "service_tier": "auto", "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert response.status_code == 200, response.text
    message = response.json()
    assert response.headers["x-generation-id"] == message["id"]
    generation(message["id"])
    lookup = httpx.get(f"{gateway.api}/generation", params={"id": message["id"]},
                       headers={"authorization": f"Bearer {bundle.raw}"}, timeout=10)
    assert lookup.status_code == 200 and lookup.json()["data"]["total_cost"] == message["usage"]["cost"]
    other = make_key(credits="1")
    hidden = httpx.get(f"{gateway.api}/generation", params={"id": message["id"]},
                       headers={"authorization": f"Bearer {other.raw}"}, timeout=10)
    assert hidden.status_code == 404


def test_a_gemini_thought_signature_goes_back_to_gemini_only(gateway, simulator):
    """Gemini signs a tool call made while thinking; the client gets it as a redacted_thinking block and
    sends it back: Gemini receives its signature on the call, Anthropic never sees it."""
    model, provider = THINKERS["gemini"]
    bundle = make_key(credits="5")
    sdk = client(gateway, bundle)
    messages = [{"role": "user", "content": "Weather in Oslo? [sim:tool=get_weather]"}]
    first = sdk.messages.create(model=model, max_tokens=3000, tools=[WEATHER], messages=messages,
                                thinking={"type": "enabled", "budget_tokens": 1024}, **only(provider))
    kinds = [block.type for block in first.content]
    assert "redacted_thinking" in kinds and kinds[-1] == "tool_use", kinds
    call = first.content[-1]
    messages += [{"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Rain"}]}]
    sdk.messages.create(model=model, max_tokens=3000, tools=[WEATHER], messages=messages, **only(provider))
    sent = [part for content in simulator.last_request(provider)["contents"] for part in content["parts"]]
    signed = [part for part in sent if "functionCall" in part]
    assert signed and signed[0].get("thoughtSignature"), sent
    claude, claude_provider, _ = DIALECTS["anthropic"]
    sdk.messages.create(model=claude, max_tokens=50, tools=[WEATHER], messages=messages, **only(claude_provider))
    turns = simulator.last_request(claude_provider)["messages"]
    assert all(block["type"] != "redacted_thinking" for turn in turns for block in turn["content"]), turns
