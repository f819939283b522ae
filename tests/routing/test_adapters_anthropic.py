"""The Anthropic Messages adapter: recorded payloads from Anthropic's docs, then real HTTP to the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.providers import TranslationError, adapter_for
from routing.providers.base import InvalidResponse
from routing.simulator.tokens import count_tokens
from tests.routing.adapter_roundtrip import adapter_send
from tests.simulator_process import SimulatorProcess

PAYLOADS = Path(__file__).parent / "payloads" / "anthropic"
adapter = adapter_for("anthropic")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def transcript(name: str) -> bytes:
    """A recorded event list rendered as the SSE bytes Anthropic sends."""
    events = json.loads(payload(name))
    return b"".join(f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n".encode() for e in events)


def translate(raw: bytes, slice_size: int = 7) -> tuple[list[dict], Any]:
    """Feed a stream in small slices (events split anywhere) and collect the chunks."""
    translator = adapter.stream_translator()
    chunks: list[dict] = []
    for start in range(0, len(raw), slice_size):
        chunks += translator.feed(raw[start : start + slice_size])
    return chunks + translator.end(), translator


def collect(chunks: list[dict]) -> dict[str, Any]:
    """What a client rebuilds from the chunks: text, reasoning, tool calls, finish reason, usage."""
    out: dict[str, Any] = {"content": "", "reasoning": "", "signatures": [], "tool_calls": {}, "finish": None}
    for chunk in chunks:
        if not chunk["choices"]:
            out["usage"] = chunk["usage"]
            continue
        choice = chunk["choices"][0]
        delta = choice["delta"]
        out["content"] += delta.get("content") or ""
        out["reasoning"] += delta.get("reasoning") or ""
        out["signatures"] += [d["signature"] for d in delta.get("reasoning_details", ()) if d.get("signature")]
        for call in delta.get("tool_calls", ()):
            entry = out["tool_calls"].setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            entry["name"] = (call.get("function") or {}).get("name") or entry["name"]
            entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
        out["finish"] = choice["finish_reason"] or out["finish"]
    return out


def anthropic_body(body: dict, **kwargs: Any) -> dict:
    request = adapter.request(
        body=body,
        upstream_model="claude-sonnet-4-5",
        base_url="https://api.anthropic.com/v1/",
        api_key="sk-ant",
        stream=False,
        **kwargs,
    )
    return json.loads(request.body)


# --- responses from the docs ----------------------------------------------------------------------


def test_text_response_with_cache_usage() -> None:
    result = adapter.parse_response(payload("message_text.json"))
    assert result["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert result["object"] == "chat.completion" and result["model"] == "claude-3-7-sonnet-20250219"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi! My name is Claude.", "reasoning": None},
            "finish_reason": "end_turn",
            "logprobs": None,
        }
    ]
    assert result["usage"] == {
        "prompt_tokens": 21 + 188086 + 1500,
        "completion_tokens": 393,
        "total_tokens": 21 + 188086 + 1500 + 393,
        "prompt_tokens_details": {"cached_tokens": 1500, "cache_write_tokens": 188086},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_tool_use_response() -> None:
    result = adapter.parse_response(payload("message_tool_use.json"))
    message = result["choices"][0]["message"]
    assert message["content"].startswith("<thinking>I need to use the get_weather")
    assert message["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
        }
    ]
    assert result["choices"][0]["finish_reason"] == "tool_use"
    assert adapter.normalize_finish_reason("tool_use") == "tool_calls"
    assert result["usage"]["prompt_tokens"] == 472 and result["usage"]["completion_tokens"] == 89


def test_thinking_response() -> None:
    message = adapter.parse_response(payload("message_thinking.json"))["choices"][0]["message"]
    assert message["content"] == "Based on my analysis..."
    assert message["reasoning"] == "Let me analyze this step by step..."
    signature = "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."
    assert message["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "format": "anthropic-claude-v1",
            "index": 0,
            "text": "Let me analyze this step by step...",
            "signature": signature,
        },
        {
            "type": "reasoning.encrypted",
            "format": "anthropic-claude-v1",
            "index": 1,
            "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP...",
        },
    ]
    # Given back on the next turn, the signed reasoning becomes thinking blocks again, first in the turn.
    body = anthropic_body(
        {"messages": [{"role": "user", "content": "Why?"}, message, {"role": "user", "content": "Go on"}]}
    )
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": signature},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP..."},
        {"type": "text", "text": "Based on my analysis..."},
    ]


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_finish_reasons(native: str | None, expected: str | None) -> None:
    assert adapter.normalize_finish_reason(native) == expected


def test_invalid_responses_are_refused() -> None:
    for raw in (
        b"not json",
        b"[]",
        b'{"type": "error", "error": {"type": "api_error", "message": "x"}}',
        b'{"id": "msg"}',
    ):
        with pytest.raises(InvalidResponse):
            adapter.parse_response(raw)


def test_error_payload_and_retry_after() -> None:
    message, retry = adapter.parse_error(429, payload("error_rate_limit.json"), {"retry-after": "30"})
    assert message.startswith("This request would exceed the rate limit")
    assert retry == 30.0
    assert adapter.parse_error(502, b"<html>bad gateway</html>", None) == ("Provider returned 502", None)


# --- streaming transcripts from the docs -----------------------------------------------------------


@pytest.mark.parametrize("slice_size", [1, 7, 10_000])
def test_stream_text_transcript(slice_size: int) -> None:
    chunks, translator = translate(transcript("stream_text.json"), slice_size)
    assert translator.done and not translator.failed
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY" for c in chunks
    )
    assert [c["choices"][0]["delta"] if c["choices"] else "usage" for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": "!"},
        {},
        "usage",
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "end_turn"
    assert chunks[-1]["usage"]["prompt_tokens"] == 25 and chunks[-1]["usage"]["completion_tokens"] == 15


def test_stream_tool_use_transcript() -> None:
    chunks, translator = translate(transcript("stream_tool_use.json"))
    assert translator.done and translator.tool_calls == 1
    out = collect(chunks)
    assert out["content"] == "Okay, let's check the weather for San Francisco, CA:"
    assert out["tool_calls"] == {
        0: {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}',
        }
    }
    assert out["finish"] == "tool_use"
    assert out["usage"]["prompt_tokens"] == 472 and out["usage"]["completion_tokens"] == 89


def test_stream_thinking_transcript() -> None:
    chunks, translator = translate(transcript("stream_thinking.json"))
    out = collect(chunks)
    assert out["reasoning"].startswith("I need to find the GCD") and out["reasoning"].endswith("= 21")
    assert out["signatures"] == ["EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."]
    assert out["content"] == "The greatest common divisor of 1071 and 462 is **21**."
    assert out["usage"]["completion_tokens"] == 178 and out["usage"]["prompt_tokens"] == 56
    details = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("reasoning_details", ())]
    assert {d["format"] for d in details} == {"anthropic-claude-v1"} and {d["index"] for d in details} == {0}


def test_stream_error_event_fails_the_stream() -> None:
    chunks, translator = translate(transcript("stream_error.json"))
    assert translator.failed and translator.done and translator.error == "Overloaded"
    assert collect(chunks)["content"] == "Once"


# --- requests -------------------------------------------------------------------------------------


def test_system_multi_turn_and_sampling() -> None:
    request = adapter.request(
        body={
            "messages": [
                {"role": "system", "content": "You are terse."},
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}],
                },
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Bonjour."},
                {"role": "user", "content": [{"type": "text", "text": "And goodbye?"}], "name": "ignored-for-parts"},
                {"role": "assistant", "content": "Au revoir "},
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop": "###",
            "max_completion_tokens": 300,
            "user": "hashed-user",
            "frequency_penalty": 0.5,
        },
        upstream_model="claude-sonnet-4-5",
        base_url="https://api.anthropic.com/v1/",
        api_key="sk-ant",
        stream=True,
    )
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant" and request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["Accept"] == "text/event-stream" and "Authorization" not in request.headers
    assert json.loads(request.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Bonjour."}]},
            {"role": "user", "content": [{"type": "text", "text": "And goodbye?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Au revoir"}]},  # a prefill: no trailing space
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["###"],
        "metadata": {"user_id": "hashed-user"},
        "stream": True,
    }


def test_max_tokens_is_always_sent() -> None:
    assert anthropic_body({"messages": [{"role": "user", "content": "hi"}]})["max_tokens"] == 4096
    assert anthropic_body({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})["max_tokens"] == 50


def test_tools_calls_and_results() -> None:
    body = anthropic_body(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "24C"}]},
                {"role": "user", "content": "Which is warmer?"},
            ],
            "tools": [WEATHER_TOOL, {"type": "openrouter:web_search"}],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
            "description": "Get the current weather in a given location",
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Rome"}},
        ],
    }
    assert body["messages"][2] == {  # consecutive tool results and the next user turn: one user message
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "24C"}]},
            {"type": "text", "text": "Which is warmer?"},
        ],
    }
    assert len(body["messages"]) == 3


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
        (None, None),
    ],
)
def test_tool_choice(choice: Any, expected: dict | None) -> None:
    body = anthropic_body(
        {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL], "tool_choice": choice}
    )
    assert body.get("tool_choice") == expected


def test_images_and_pdfs() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"filename": "paper.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="}},
        {
            "type": "file",
            "file": {"file_data": "https://example.com/report.pdf"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    body = anthropic_body({"messages": [{"role": "user", "content": content}]})
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
            "title": "paper.pdf",
        },
        {
            "type": "document",
            "source": {"type": "url", "url": "https://example.com/report.pdf"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


@pytest.mark.parametrize(
    ("extra", "thinking", "max_tokens"),
    [
        ({"reasoning": {"effort": "high"}}, {"type": "enabled", "budget_tokens": 3276}, 4096),
        ({"reasoning_effort": "low", "max_tokens": 10_000}, {"type": "enabled", "budget_tokens": 2000}, 10_000),
        ({"reasoning": {"max_tokens": 2000}, "max_tokens": 5000}, {"type": "enabled", "budget_tokens": 2000}, 5000),
        ({"reasoning": {"max_tokens": 8000}}, {"type": "enabled", "budget_tokens": 8000}, 8000 + 4096),
        ({"reasoning": {"max_tokens": 8000}, "max_tokens": 3000}, {"type": "enabled", "budget_tokens": 2999}, 3000),
        ({"reasoning": {"effort": "minimal"}}, {"type": "enabled", "budget_tokens": 1024}, 4096),
        ({"reasoning": {"enabled": True}}, {"type": "enabled", "budget_tokens": 2048}, 4096),
        ({"reasoning": {"effort": "high"}, "max_tokens": 800}, None, 800),
        ({"reasoning": {"effort": "none"}}, None, 4096),
        ({"reasoning": {"enabled": False}}, None, 4096),
    ],
)
def test_reasoning_becomes_a_thinking_budget(extra: dict, thinking: dict | None, max_tokens: int) -> None:
    body = anthropic_body({"messages": [{"role": "user", "content": "think"}], "temperature": 0.5, **extra})
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == max_tokens
    assert ("temperature" in body) == (thinking is None)  # Anthropic refuses sampling settings with thinking


def test_untranslatable_requests() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(TranslationError, match="input_audio"):
        anthropic_body({"messages": [{"role": "user", "content": [audio]}]})
    bad_call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    with pytest.raises(TranslationError, match="not valid JSON"):
        anthropic_body({"messages": [{"role": "assistant", "content": None, "tool_calls": [bad_call]}]})
    with pytest.raises(TranslationError, match="audio/wav"):
        anthropic_body(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:audio/wav;base64,AA=="}}]}
                ]
            }
        )


# --- over real HTTP, through the simulator ---------------------------------------------------------


def send(sim: SimulatorProcess, body: dict, *, stream: bool = False, slug: str = "anthropic", api_key: str = "sk-test"):
    return adapter_send(adapter, sim, body, upstream_model="claude-sim", slug=slug, api_key=api_key, stream=stream)


def test_round_trip_text(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]}
    result, response = send(sim, body)
    message = result["choices"][0]["message"]
    usage = result["usage"]
    assert result["id"].startswith("msg_") and result["model"] == "claude-sim"
    assert result["choices"][0]["finish_reason"] == "end_turn"
    assert usage["completion_tokens"] == count_tokens(message["content"]) > 0
    assert usage["prompt_tokens"] == count_tokens("Be brief.") + count_tokens("Hello there") + 4 + 3
    sent = sim.last_request("anthropic")
    assert sent["system"] == [{"type": "text", "text": "Be brief."}] and sent["max_tokens"] == 4096
    assert sim.last_headers("anthropic")["x-api-key"] == "sk-test"

    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert translator.done and not translator.failed
    assert streamed["content"] == message["content"]
    assert streamed["finish"] == "end_turn"
    assert streamed["usage"] == usage
    assert sim.stats("anthropic")["completed"] == 2
    assert sim.stats("anthropic")["tokens_emitted"] == 2 * usage["completion_tokens"]


def test_round_trip_tool_call_and_result(sim: SimulatorProcess) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris? [sim:tool=get_weather]"}],
        "tools": [WEATHER_TOOL],
    }
    result, _ = send(sim, body)
    message = result["choices"][0]["message"]
    (call,) = message["tool_calls"]
    arguments = json.loads(call["function"]["arguments"])
    assert call["id"].startswith("toolu_") and call["function"]["name"] == "get_weather"
    assert set(arguments) == {"location", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    assert result["choices"][0]["finish_reason"] == "tool_use"
    assert result["usage"]["completion_tokens"] == count_tokens(message["content"]) + count_tokens(
        call["function"]["arguments"]
    )

    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert translator.tool_calls == 1 and streamed["finish"] == "tool_use"
    assert json.loads(streamed["tool_calls"][0]["arguments"]) == arguments
    assert streamed["content"] == message["content"]

    follow_up = {
        "messages": [
            *body["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
        ],
        "tools": [WEATHER_TOOL],
    }
    result, response = send(sim, follow_up)
    assert response.status_code == 200 and result["choices"][0]["finish_reason"] == "end_turn"
    assert sim.last_request("anthropic")["messages"][-1]["content"][0]["type"] == "tool_result"


def test_round_trip_thinking(sim: SimulatorProcess) -> None:
    body = {
        "messages": [{"role": "user", "content": "Think first."}],
        "reasoning": {"effort": "low"},
        "max_tokens": 8000,
    }
    result, _ = send(sim, body)
    assert sim.last_request("anthropic")["thinking"] == {"type": "enabled", "budget_tokens": 1600}
    message = result["choices"][0]["message"]
    assert message["reasoning"] and message["reasoning_details"][0]["signature"]
    assert result["usage"]["completion_tokens"] == count_tokens(message["reasoning"]) + count_tokens(message["content"])

    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert streamed["reasoning"] == message["reasoning"] and streamed["content"] == message["content"]
    assert streamed["signatures"] == [message["reasoning_details"][0]["signature"]]
    assert streamed["usage"]["completion_tokens"] == result["usage"]["completion_tokens"]

    # The signed thinking goes back with the next turn and the simulator accepts it.
    follow_up = {
        "messages": [*body["messages"], message, {"role": "user", "content": "More?"}],
        "reasoning": {"effort": "low"},
        "max_tokens": 8000,
    }
    assert send(sim, follow_up)[1].status_code == 200
    assert sim.last_request("anthropic")["messages"][1]["content"][0]["type"] == "thinking"


def test_max_tokens_cap_is_length(sim: SimulatorProcess) -> None:
    result, _ = send(sim, {"messages": [{"role": "user", "content": "[sim:tokens=30]"}], "max_tokens": 5})
    assert result["choices"][0]["finish_reason"] == "max_tokens"
    assert adapter.normalize_finish_reason("max_tokens") == "length"
    assert result["usage"]["completion_tokens"] == 5


def test_prompt_cache_write_then_read(sim: SimulatorProcess) -> None:
    long_system = "Reference manual. " * 50
    body = {
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "Question one"},
        ]
    }
    first, _ = send(sim, body)
    second, _ = send(sim, {"messages": [body["messages"][0], {"role": "user", "content": "Question two"}]})
    written = first["usage"]["prompt_tokens_details"]["cache_write_tokens"]
    assert written == count_tokens(long_system) + 3
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"] == {"cached_tokens": written, "cache_write_tokens": 0}
    assert second["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"]


def test_failures_give_message_and_retry_after(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    sim.set("anthropic", fail="429", retry_after=7)
    (message, retry), response = send(sim, body)
    assert response.status_code == 429 and response.json()["error"]["type"] == "rate_limit_error"
    assert (message, retry) == ("Simulated rate limit exceeded", 7.0)
    sim.set("anthropic", fail="503")
    (message, retry), response = send(sim, body)
    assert response.status_code == 503 and response.json()["type"] == "error"
    assert message.startswith("Simulated service unavailable") and retry is None
    sim.set("anthropic")
    (message, _), response = send(sim, body, api_key="")
    assert response.status_code == 401 and message == "x-api-key header is required"
    assert sim.stats("anthropic")["failed"] == 3


def test_simulator_validates_the_messages_dialect(sim: SimulatorProcess) -> None:
    url = f"{sim.base_url('anthropic')}/messages"
    headers = {"x-api-key": "k"}
    bad_bodies = [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},  # no max_tokens
        {"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "hi"}]},
        {
            "model": "m",
            "max_tokens": 2000,
            "messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "enabled", "budget_tokens": 4000},
        },
    ]
    for bad in bad_bodies:
        response = httpx.post(url, json=bad, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_paced_stream_and_empty_mode(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "user", "content": "[sim:tokens=20]"}]}
    sim.set("anthropic", tokens_per_second=200)
    started = time.monotonic()
    (chunks, translator), _ = send(sim, body, stream=True)
    assert time.monotonic() - started >= 0.09
    assert translator.done and collect(chunks)["usage"]["completion_tokens"] == 20
    sim.set("anthropic", fail="empty")
    result, _ = send(sim, body)
    assert result["choices"][0]["message"]["content"] == "" and result["choices"][0]["finish_reason"] is None
    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert translator.done and streamed["content"] == "" and streamed["finish"] is None
    assert streamed["usage"]["completion_tokens"] == 0


def test_dropped_stream_is_not_done(sim: SimulatorProcess) -> None:
    sim.set("anthropic", fail="drop", drop_after_chunks=3)
    upstream = adapter.request(
        body={"messages": [{"role": "user", "content": "[sim:tokens=10]"}]},
        upstream_model="m",
        base_url=sim.base_url("anthropic"),
        api_key="k",
        stream=True,
    )
    translator = adapter.stream_translator()
    chunks: list[dict] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", upstream.url, content=upstream.body, headers=upstream.headers) as response,
    ):
        for data in response.iter_raw():
            chunks += translator.feed(data)
    assert not translator.done and not translator.failed  # the gateway treats this as a provider failure
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 3
