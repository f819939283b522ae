"""The Messages <-> chat translation on its own (``routing.dialects.messages``): what the adapters get, and
the events a chat stream becomes. The live-server tests (``test_messages_api.py``) cover the rest."""

from __future__ import annotations

import orjson
import pytest

from billing.metering import Charge, Cost, Usage
from openrouter_site.errors import BadRequest
from routing.dialects.messages import (
    FORMAT,
    MessagesStream,
    chat_body,
    content_blocks,
    foreign_data,
    input_tokens_count,
    messages_parse,
)
from routing.providers.anthropic import build_body
from routing.providers.openai import OpenAIAdapter
from routing.tokens import WORDS
from tests.openapi import validate_schema

CACHE = {"type": "ephemeral"}


def test_claude_code_body_reaches_an_anthropic_provider_with_nothing_that_matters_lost():
    body = {
        "model": "anthropic/claude-sonnet-4",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "billing header"}, {"type": "text", "text": "You are Claude Code.",
                                                                 "cache_control": CACHE}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "fix it", "cache_control": CACHE}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "let me look", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)", "cache_control": CACHE},
                {"type": "text", "text": "go on"},
            ]},
            {"role": "system", "content": "Available agent types: none."},
        ],
        "tools": [{"name": "Read", "description": "read", "input_schema": {"type": "object"}, "cache_control": CACHE,
                   "defer_loading": False}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stop_sequences": ["a", "b", "c", "d", "e"],
        "top_k": 5,
    }
    request = messages_parse(body, "openai/gpt-4o-mini")
    assert request.model == "anthropic/claude-sonnet-4" and request.max_tokens == 32000 and request.clamp_max_tokens
    sent = build_body(request.body, "claude-sonnet-4", stream=True)
    assert sent["system"] == [{"type": "text", "text": "billing header"},
                              {"type": "text", "text": "You are Claude Code.", "cache_control": CACHE},
                              {"type": "text", "text": "Available agent types: none."}]
    user, assistant, result = sent["messages"]
    assert user["content"] == [{"type": "text", "text": "fix it", "cache_control": CACHE}]
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "let me look", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}},
    ]
    assert result["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1",
                                    "content": [{"type": "text", "text": "print(1)", "cache_control": CACHE}]}
    assert result["content"][1] == {"type": "text", "text": "go on"}
    assert sent["tools"] == [{"name": "Read", "input_schema": {"type": "object"}, "description": "read",
                              "cache_control": CACHE}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["stop_sequences"] == ["a", "b", "c", "d", "e"]


def test_an_openai_provider_gets_chat_messages_in_order():
    request = messages_parse(
        {"model": "m/x", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "text", "text": "and"},
                                         {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                          "content": [{"type": "text", "text": "boom"}]}]},
        ], "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "f"}},
        "d/m",
    )
    sent = orjson.loads(OpenAIAdapter().request(body=request.body, upstream_model="x", base_url="http://u",
                                                api_key="k", stream=False).body)
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]  # the tool's answer right after the call
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert sent["messages"][2]["content"] == [{"type": "text", "text": "Error:"}, {"type": "text", "text": "boom"}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("thinking", "output_config", "reasoning"),
    [({"type": "enabled", "budget_tokens": 1500}, None, {"max_tokens": 1500}),
     ({"type": "adaptive"}, {"effort": "high"}, {"effort": "high"}),
     ({"type": "adaptive", "display": "updates"}, None, {"enabled": True}),
     ({"type": "disabled"}, {"effort": "low"}, None)],
)
def test_thinking_becomes_reasoning(thinking, output_config, reasoning):
    body = {"model": "m/x", "messages": [{"role": "user", "content": "hi"}], "thinking": thinking}
    if output_config:
        body["output_config"] = output_config
    assert chat_body(body).get("reasoning") == reasoning


def test_a_chat_stream_becomes_named_events_in_the_specs_shapes():
    stream = MessagesStream(generation_id="gen-1", model="m/x", provider="OpenAI", kind="chat", adapter=OpenAIAdapter(),
                            strip_reasoning=False)

    def chunk(delta, finish=None):
        return {"id": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = stream.feed([chunk({"role": "assistant", "content": ""})])
    assert out == b""  # held back until the first token
    out += stream.feed([chunk({"reasoning": "hmm"}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                               "function": {"name": "f", "arguments": "{\"a\""}}]}),
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                        chunk({}, "tool_calls")])
    charge = Charge(cost=Cost(total=30, prompt=10, completion=20, request=0), charged=30)
    out += stream.tail(Usage(prompt_tokens=7, completion_tokens=6, cached_tokens=2), charge, is_byok=False,
                       failed=False, finish=stream.finish)
    events = []
    for frame in out.decode().strip().split("\n\n"):
        event_line, data_line = frame.split("\n")
        kind, data = event_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == kind
        validate_schema("MessagesStreamingResponse", {"event": kind, "data": data})
        events.append((kind, data))
    kinds = [k for k, _ in events]
    assert kinds == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_stop",  # thinking
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert events[8][1]["content_block"]["name"] == "f" and events[8][1]["index"] == 2
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    usage = events[-2][1]["usage"]
    assert usage["input_tokens"] == 5 and usage["cache_read_input_tokens"] == 2 and usage["cost"] == 3e-08


def test_foreign_signatures_are_marked_and_never_reach_anthropic():
    gemini = {"type": "reasoning.encrypted", "data": "g-sig", "id": "call_1", "format": "google-gemini-v1"}
    anthropic = {"type": "reasoning.text", "text": "t", "signature": "a-sig", "format": FORMAT}
    blocks = content_blocks({"content": "x", "reasoning_details": [gemini, anthropic]}, strip_reasoning=False)
    assert blocks[0] == {"type": "redacted_thinking", "data": foreign_data(gemini)}
    assert blocks[1] == {"type": "thinking", "thinking": "t", "signature": "a-sig"}
    back = chat_body({"model": "m/x", "messages": [{"role": "user", "content": "q"},
                                                   {"role": "assistant", "content": blocks}]})
    details = back["messages"][1]["reasoning_details"]
    assert details[0] == {**gemini, "index": 0}  # back to Gemini as it came
    sent = build_body(back, "claude", stream=False)
    assert sent["messages"][1]["content"][0] == {"type": "thinking", "thinking": "t", "signature": "a-sig"}
    assert all(block["type"] != "redacted_thinking" for block in sent["messages"][1]["content"])


def test_count_tokens_never_undercounts_and_counts_system_and_tools():
    text = "héllo wörld, " * 50
    messages = [{"role": "user", "content": text}]
    bare = input_tokens_count({"model": "m/x", "messages": messages})
    assert bare >= len(WORDS.findall(text))  # never below a word-and-punctuation tokenizer's count
    assert bare >= len(text.encode()) // 3  # nor below a token per three bytes
    assert bare < len(text.encode())  # and not the byte bound the credit hold uses
    system = input_tokens_count({"model": "m/x", "messages": messages, "system": "S" * 300})
    tools = input_tokens_count({"model": "m/x", "messages": messages,
                                "tools": [{"name": "t", "input_schema": {"type": "object", "x": "y" * 300}}]})
    assert system >= bare + 100 and tools >= bare + 100
    thinking = input_tokens_count({"model": "m/x", "messages": [*messages, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "z" * 300, "signature": "s"}, {"type": "text", "text": "ok"}]}]})
    assert thinking >= bare + 100  # earlier thinking counts too
    with pytest.raises(BadRequest):
        input_tokens_count({"messages": messages})
