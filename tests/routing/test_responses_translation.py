"""The Responses translation's pure parts: errors as the codes Codex maps, reasoning given back intact,
custom and namespaced tools answered as the items their clients expect, and a stream's events in order."""

from __future__ import annotations

import orjson
import pytest

from openrouter_site.errors import ApiError, BadRequest, PaymentRequired, RateLimited, ServiceUnavailable
from routing.dialects.responses import encrypted_content, parse_responses
from routing.dialects.responses_answer import ResponsesStream, chat_to_response, error_code
from routing.providers.openai import OpenAIAdapter
from tests.openapi import validate_schema


@pytest.mark.parametrize(("exc", "code"), [
    (RateLimited("slow down"), "rate_limit_exceeded"),
    (PaymentRequired("Insufficient credits"), "insufficient_quota"),
    (ApiError("This model's maximum context length is 8192 tokens", status=400), "context_length_exceeded"),
    (BadRequest("bad"), "invalid_prompt"),
    (ServiceUnavailable("down"), "server_error"),
])
def test_errors_carry_the_codes_codex_maps(exc, code):
    assert error_code(exc) == code


def _request(**extra):
    return parse_responses({"model": "a/b", "input": "hi", **extra}, "x/y")


def test_reasoning_details_survive_a_round_trip():
    details = [{"type": "reasoning.text", "text": "hmm", "signature": "c2ln", "format": "anthropic-claude-v1",
                "index": 0}]
    item = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hmm"}],
            "encrypted_content": encrypted_content(details)}
    request = parse_responses({"model": "a/b", "input": [
        {"role": "user", "content": "q"}, item, {"role": "assistant", "content": "a"},
        {"role": "user", "content": "again"},
    ]}, "x/y")
    assistant = request.body["messages"][1]
    assert assistant == {"role": "assistant", "content": "a", "reasoning_details": details, "reasoning": "hmm"}


def test_foreign_encrypted_reasoning_is_passed_on_as_it_came():
    request = parse_responses({"model": "a/b", "input": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-openai-blob"},
        {"role": "user", "content": "q"},
    ]}, "x/y")
    assert request.body["messages"][0]["reasoning_details"][0]["data"] == "gAAAA-openai-blob"


def test_custom_and_namespaced_tools_come_back_as_their_own_items():
    request = _request(tools=[
        {"type": "custom", "name": "apply_patch"},
        {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]},
    ])
    chat = {"id": "gen-1-x", "model": "a/b", "created": 1, "provider": "P", "usage": {"prompt_tokens": 1},
            "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "apply_patch",
                                                              "arguments": '{"input": "*** Begin Patch"}'}},
                {"id": "c2", "type": "function", "function": {"name": "spawn_agent", "arguments": "{}"}},
            ]}}]}
    output = chat_to_response(request, chat)["output"]
    assert output[0]["type"] == "custom_tool_call" and output[0]["input"] == "*** Begin Patch"
    assert output[1]["type"] == "function_call" and output[1]["namespace"] == "multi_agent_v1"
    # ... and go back as the same tool call
    again = parse_responses({"model": "a/b", "tools": [{"type": "custom", "name": "apply_patch"}], "input": [
        {"role": "user", "content": "q"}, output[0],
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
    ]}, "x/y")
    call = again.body["messages"][1]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch"}
    assert again.body["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "Done!"}


def test_a_stream_of_reasoning_text_and_a_tool_call_becomes_ordered_items():
    request = _request(tools=[{"type": "function", "name": "f"}])
    state = ResponsesStream(request=request, generation_id="gen-1-x", model="a/b", provider="P", kind="chat",
                            adapter=OpenAIAdapter(), strip_reasoning=False)
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "think", "reasoning_details": [
            {"type": "reasoning.text", "text": "think", "index": 0}]}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_details": [
            {"type": "reasoning.text", "signature": "sig", "index": 0}]}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hello"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cost": 0.5, "cost_details": {
        "upstream_inference_cost": 0.5, "upstream_inference_prompt_cost": 0.1, "upstream_inference_completions_cost": 0.4}}
    out = state.feed(chunks) + state.event({"choices": [], "usage": usage})  # the SSE responder's tail
    events = [orjson.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    for event in events:
        validate_schema("StreamEvents", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "message", "function_call"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2]
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["output"] == done
    assert events[-1]["response"]["usage"]["output_tokens"] == 4
    # the signature that came after the text is in the reasoning item given back next turn
    again = parse_responses({"model": "a/b", "input": [{"role": "user", "content": "q"}, done[0]]}, "x/y")
    assert again.body["messages"][1]["reasoning_details"] == [
        {"type": "reasoning.text", "text": "think", "index": 0, "signature": "sig"}]
