"""The Gemini generateContent adapter: recorded payloads from Google's docs, then real HTTP to the simulator."""

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

PAYLOADS = Path(__file__).parent / "payloads" / "gemini"
adapter = adapter_for("google")
LIGHT_TOOL = {
    "type": "function",
    "function": {
        "name": "set_light_values",
        "description": "Sets the brightness and color temperature of a light.",
        "parameters": {
            "type": "object",
            "properties": {
                "brightness": {"type": "integer", "description": "Light level from 0 to 100."},
                "color_temp": {"type": "string", "enum": ["daylight", "cool", "warm"]},
            },
            "required": ["brightness", "color_temp"],
            "additionalProperties": False,
        },
    },
}


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def transcript(name: str) -> bytes:
    """Recorded partial responses rendered as the SSE bytes Google sends (CRLF, no terminator)."""
    return b"".join(f"data: {json.dumps(event)}\r\n\r\n".encode() for event in json.loads(payload(name)))


def translate(raw: bytes, slice_size: int = 5) -> tuple[list[dict], Any]:
    translator = adapter.stream_translator()
    chunks: list[dict] = []
    for start in range(0, len(raw), slice_size):
        chunks += translator.feed(raw[start : start + slice_size])
    return chunks + translator.end(), translator


def collect(chunks: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {"content": "", "reasoning": "", "details": [], "tool_calls": {}, "finish": None}
    for chunk in chunks:
        if not chunk["choices"]:
            out["usage"] = chunk["usage"]
            continue
        choice = chunk["choices"][0]
        delta = choice["delta"]
        out["content"] += delta.get("content") or ""
        out["reasoning"] += delta.get("reasoning") or ""
        out["details"] += delta.get("reasoning_details") or []
        for call in delta.get("tool_calls", ()):
            entry = out["tool_calls"].setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            entry["name"] = (call.get("function") or {}).get("name") or entry["name"]
            entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
        out["finish"] = choice["finish_reason"] or out["finish"]
    return out


def gemini_body(body: dict) -> dict:
    request = adapter.request(
        body=body,
        upstream_model="gemini-2.5-flash",
        base_url="https://generativelanguage.googleapis.com/v1beta",
        api_key="AIza",
        stream=False,
    )
    return json.loads(request.body)


# --- responses from the docs ----------------------------------------------------------------------


def test_text_response_with_cached_tokens() -> None:
    result = adapter.parse_response(payload("response_text.json"))
    assert result["id"] == "mAitaLmXHPPmjMcP-yNrf2Q" and result["model"] == "gemini-2.0-flash"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "AI learns patterns from data and uses them to make predictions or decisions.",
                "reasoning": None,
            },
            "finish_reason": "STOP",
            "logprobs": None,
        }
    ]
    assert result["usage"] == {
        "prompt_tokens": 696219,  # Google's prompt count already includes the cached part
        "completion_tokens": 214,
        "total_tokens": 696433,
        "prompt_tokens_details": {"cached_tokens": 696190, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_function_call_response() -> None:
    result = adapter.parse_response(payload("response_function_call.json"))
    message = result["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "set_light_values", "arguments": '{"brightness":25,"color_temp":"warm"}'}
    assert message["content"] is None
    native = result["choices"][0]["finish_reason"]
    assert native == "STOP"
    assert adapter.normalize_finish_reason(native, tool_calls=True) == "tool_calls"  # Gemini says STOP for calls
    assert result["usage"]["prompt_tokens"] == 91 and result["usage"]["completion_tokens"] == 24


def test_thoughts_response_counts_thoughts_as_completion() -> None:
    result = adapter.parse_response(payload("response_thoughts.json"))
    message = result["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert message["reasoning"].startswith("**Calculating the Sum**")
    assert message["reasoning_details"] == [
        {"type": "reasoning.text", "text": message["reasoning"], "format": "google-gemini-v1", "index": 0},
        {
            "type": "reasoning.encrypted",
            "data": "CiwBVKhc7nmZc4XaOt3Zm7h0A3yQkI6vV9CfHRn2uJpLmxFdR8xRZw==",
            "id": call["id"],
            "format": "google-gemini-v1",
            "index": 1,
        },
    ]
    assert result["usage"]["completion_tokens"] == 18 + 1205
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1205}
    # The signature goes back on the call it signed in the next turn.
    body = gemini_body(
        {
            "messages": [
                {"role": "user", "content": "Temperature in London?"},
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": "12C"},
            ]
        }
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_current_temperature", "args": {"location": "London"}},
                "thoughtSignature": "CiwBVKhc7nmZc4XaOt3Zm7h0A3yQkI6vV9CfHRn2uJpLmxFdR8xRZw==",
            }
        ],
    }
    assert body["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_current_temperature", "response": {"output": "12C"}}}],
    }


def test_blocked_prompt() -> None:
    result = adapter.parse_response(payload("response_blocked.json"))
    assert result["choices"][0]["finish_reason"] == "SAFETY"
    assert result["choices"][0]["message"]["content"] == ""
    assert adapter.normalize_finish_reason("SAFETY") == "content_filter"


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(native: str, expected: str) -> None:
    assert adapter.normalize_finish_reason(native) == expected


def test_invalid_responses_are_refused() -> None:
    for raw in (b"", b"[1]", b'{"error": {"code": 500, "message": "x"}}', b'{"modelVersion": "x"}'):
        with pytest.raises(InvalidResponse):
            adapter.parse_response(raw)


def test_error_payload_retry_delay() -> None:
    message, retry = adapter.parse_error(429, payload("error_quota.json"), {})
    assert message.startswith("You exceeded your current quota")
    assert retry == 17.0
    assert adapter.parse_error(429, payload("error_quota.json"), {"Retry-After": "3"})[1] == 3.0


# --- streaming transcripts from the docs -----------------------------------------------------------


@pytest.mark.parametrize("slice_size", [1, 5, 100_000])
def test_stream_text_transcript(slice_size: int) -> None:
    chunks, translator = translate(transcript("stream_text.json"), slice_size)
    assert translator.done and not translator.failed
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["id"] == "wj2taKuJMZ3UjMcPkZ_F6Ac" and c["model"] == "gemini-2.0-flash" for c in chunks)
    out = collect(chunks)
    assert (
        out["content"]
        == "Once upon a time, in a land filled with whispering trees, there lived a curious little robot named Pip."
    )
    assert out["finish"] == "STOP"
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "STOP"
    assert out["usage"]["prompt_tokens"] == 8 and out["usage"]["completion_tokens"] == 24


def test_stream_thoughts_transcript() -> None:
    chunks, translator = translate(transcript("stream_thoughts.json"))
    out = collect(chunks)
    assert out["reasoning"].startswith("**Exploring the puzzle**")
    assert out["content"] == "Alice owns the dog, Bob owns the cat and Carol owns the fish."
    assert [d["type"] for d in out["details"]] == ["reasoning.text", "reasoning.encrypted"]
    assert out["details"][1]["data"] == "Cq4BAcu98PCq0vR2R8lGZmLtK3wYc6s=" and out["details"][1]["id"] is None
    assert (
        out["usage"]["completion_tokens"] == 15 + 280
        and out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 280
    )


def test_stream_error_event_fails_the_stream() -> None:
    raw = transcript("stream_text.json").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    raw += b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n'
    chunks, translator = translate(raw)
    assert translator.failed and translator.error == "The model is overloaded."
    assert collect(chunks)["content"] == "Once"


# --- requests -------------------------------------------------------------------------------------


def test_system_multi_turn_and_generation_config() -> None:
    request = adapter.request(
        body={
            "messages": [
                {"role": "system", "content": "You are a cat."},
                {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "Meow."},
                {"role": "user", "content": [{"type": "text", "text": "Good cat."}]},
            ],
            "max_tokens": 500,
            "temperature": 1.0,
            "top_p": 0.8,
            "top_k": 10,
            "stop": ["Title"],
            "seed": 7,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        },
        upstream_model="models/gemini-2.0-flash",
        base_url="https://generativelanguage.googleapis.com/v1beta/",
        api_key="AIza",
        stream=True,
    )
    assert (
        request.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )
    assert request.headers["x-goog-api-key"] == "AIza" and "Authorization" not in request.headers
    assert json.loads(request.body) == {
        "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello there"}]},
            {"role": "model", "parts": [{"text": "Meow."}]},
            {"role": "user", "parts": [{"text": "Good cat."}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 500,
            "temperature": 1.0,
            "topP": 0.8,
            "topK": 10,
            "seed": 7,
            "stopSequences": ["Title"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
    }
    plain = adapter.request(
        body={"messages": [{"role": "user", "content": "hi"}]},
        upstream_model="gemini-2.0-flash",
        base_url="https://g/v1beta",
        api_key="k",
        stream=False,
    )
    assert plain.url == "https://g/v1beta/models/gemini-2.0-flash:generateContent"
    assert json.loads(plain.body) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_tools_calls_and_results() -> None:
    body = gemini_body(
        {
            "messages": [
                {"role": "user", "content": "Dim the lights and warm them."},
                {
                    "role": "assistant",
                    "content": "Sure.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {
                                "name": "set_light_values",
                                "arguments": '{"brightness": 25, "color_temp": "warm"}',
                            },
                        },
                        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": '{"brightness": 25, "colorTemperature": "warm"}'},
                {"role": "tool", "tool_call_id": "call_b", "content": "10:42"},
            ],
            "tools": [LIGHT_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "set_light_values"}},
        }
    )
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "set_light_values",
                    "description": "Sets the brightness and color temperature of a light.",
                    "parametersJsonSchema": LIGHT_TOOL["function"]["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["set_light_values"]}
    }
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Sure."},
            {"functionCall": {"name": "set_light_values", "args": {"brightness": 25, "color_temp": "warm"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
    }
    assert body["contents"][2] == {  # parallel results travel together in one user turn
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "set_light_values",
                    "response": {"brightness": 25, "colorTemperature": "warm"},
                }
            },
            {"functionResponse": {"name": "get_time", "response": {"output": "10:42"}}},
        ],
    }


@pytest.mark.parametrize(("choice", "mode"), [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")])
def test_tool_choice_modes(choice: str, mode: str) -> None:
    body = gemini_body({"messages": [{"role": "user", "content": "hi"}], "tools": [LIGHT_TOOL], "tool_choice": choice})
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_images_pdfs_and_audio() -> None:
    content = [
        {"type": "text", "text": "Caption this."},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png?size=large"}},
        {"type": "file", "file": {"filename": "paper.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="}},
        {"type": "file", "file": {"file_data": "https://example.com/report"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    body = gemini_body({"messages": [{"role": "user", "content": content}]})
    assert body["contents"][0]["parts"] == [
        {"text": "Caption this."},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png?size=large"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/report"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


@pytest.mark.parametrize(
    ("extra", "thinking"),
    [
        ({"reasoning": {"effort": "high"}, "max_tokens": 10_000}, {"thinkingBudget": 8000, "includeThoughts": True}),
        ({"reasoning": {"max_tokens": 1234}}, {"thinkingBudget": 1234, "includeThoughts": True}),
        ({"reasoning": {"enabled": True}}, {"thinkingBudget": -1, "includeThoughts": True}),
        ({"reasoning": {"effort": "medium", "exclude": True}}, {"thinkingBudget": 2048}),
        ({"reasoning_effort": "none"}, {"thinkingBudget": 0}),
        ({}, None),
    ],
)
def test_reasoning_becomes_a_thinking_config(extra: dict, thinking: dict | None) -> None:
    body = gemini_body({"messages": [{"role": "user", "content": "think"}], **extra})
    assert body.get("generationConfig", {}).get("thinkingConfig") == thinking


def test_untranslatable_requests() -> None:
    with pytest.raises(TranslationError, match="refusal"):
        gemini_body({"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]})
    with pytest.raises(TranslationError, match="must be a JSON object"):
        gemini_body(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            }
        )


# --- over real HTTP, through the simulator ---------------------------------------------------------


def send(sim: SimulatorProcess, body: dict, *, stream: bool = False, slug: str = "google", api_key: str = "AIza-test"):
    return adapter_send(adapter, sim, body, upstream_model="gemini-sim", slug=slug, api_key=api_key, stream=stream)


def test_round_trip_text(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]}
    result, _ = send(sim, body)
    message = result["choices"][0]["message"]
    usage = result["usage"]
    assert result["model"] == "gemini-sim" and result["choices"][0]["finish_reason"] == "STOP"
    assert usage["completion_tokens"] == count_tokens(message["content"]) > 0
    assert usage["prompt_tokens"] == count_tokens("Be brief.") + count_tokens("Hello there") + 2 * 4 + 3
    sent = sim.last_request("google")
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sim.last_headers("google")["x-goog-api-key"] == "AIza-test"

    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert translator.done and not translator.failed
    assert streamed["content"] == message["content"] and streamed["finish"] == "STOP"
    assert streamed["usage"] == usage
    stats = sim.stats("google")
    assert stats["completed"] == 2 and stats["tokens_emitted"] == 2 * usage["completion_tokens"]


def test_round_trip_function_call_and_response(sim: SimulatorProcess) -> None:
    body = {
        "messages": [{"role": "user", "content": "Dim the lights [sim:tool=set_light_values]"}],
        "tools": [LIGHT_TOOL],
    }
    result, _ = send(sim, body)
    message = result["choices"][0]["message"]
    (call,) = message["tool_calls"]
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) == {"brightness", "color_temp"} and arguments["color_temp"] in ("daylight", "cool", "warm")
    assert isinstance(arguments["brightness"], int)
    assert adapter.normalize_finish_reason(result["choices"][0]["finish_reason"], tool_calls=True) == "tool_calls"
    assert result["usage"]["completion_tokens"] == count_tokens(message["content"]) + count_tokens(
        call["function"]["arguments"]
    )

    (chunks, translator), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert translator.tool_calls == 1 and json.loads(streamed["tool_calls"][0]["arguments"]) == arguments
    assert streamed["usage"]["completion_tokens"] == result["usage"]["completion_tokens"]

    follow_up = {
        "messages": [*body["messages"], message, {"role": "tool", "tool_call_id": call["id"], "content": "done"}],
        "tools": [LIGHT_TOOL],
    }
    result, response = send(sim, follow_up)
    assert response.status_code == 200 and not result["choices"][0]["message"].get("tool_calls")
    response_part = sim.last_request("google")["contents"][-1]["parts"][0]
    assert response_part == {"functionResponse": {"name": "set_light_values", "response": {"output": "done"}}}


def test_round_trip_thinking(sim: SimulatorProcess) -> None:
    body = {
        "messages": [{"role": "user", "content": "Think [sim:tool=set_light_values]"}],
        "tools": [LIGHT_TOOL],
        "reasoning": {"max_tokens": 500},
    }
    result, _ = send(sim, body)
    message = result["choices"][0]["message"]
    usage = result["usage"]
    assert sim.last_request("google")["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 500,
        "includeThoughts": True,
    }
    assert message["reasoning"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == count_tokens(message["reasoning"])
    signature = message["reasoning_details"][-1]
    assert signature["type"] == "reasoning.encrypted" and signature["id"] == message["tool_calls"][0]["id"]

    (chunks, _), _ = send(sim, body, stream=True)
    streamed = collect(chunks)
    assert streamed["reasoning"] == message["reasoning"] and streamed["content"] == message["content"]
    assert streamed["usage"]["completion_tokens"] == usage["completion_tokens"]

    # Thinking without includeThoughts: billed, not shown.
    result, _ = send(sim, {**body, "reasoning": {"max_tokens": 500, "exclude": True}})
    assert result["choices"][0]["message"]["reasoning"] is None
    assert (
        result["usage"]["completion_tokens_details"]["reasoning_tokens"]
        == usage["completion_tokens_details"]["reasoning_tokens"]
    )

    # The signature goes back on the call, and the simulator accepts the turn.
    call = message["tool_calls"][0]
    follow_up = {
        **body,
        "messages": [*body["messages"], message, {"role": "tool", "tool_call_id": call["id"], "content": "ok"}],
    }
    assert send(sim, follow_up)[1].status_code == 200
    assert sim.last_request("google")["contents"][1]["parts"][-1]["thoughtSignature"] == signature["data"]


def test_max_output_tokens_cap(sim: SimulatorProcess) -> None:
    result, _ = send(sim, {"messages": [{"role": "user", "content": "[sim:tokens=30]"}], "max_tokens": 4})
    assert result["choices"][0]["finish_reason"] == "MAX_TOKENS" and result["usage"]["completion_tokens"] == 4


def test_failures_give_message_and_retry_delay(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    sim.set("google", fail="429", retry_after=9)
    (message, retry), response = send(sim, body)
    assert response.status_code == 429 and response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "Retry-After" not in response.headers  # Google says it in the body
    assert (message, retry) == ("Simulated rate limit exceeded", 9.0)
    sim.set("google", fail="500")
    (message, retry), response = send(sim, body)
    assert response.status_code == 500 and message == "Simulated internal server error" and retry is None
    sim.set("google")
    (message, _), response = send(sim, body, api_key="")
    assert response.status_code == 403 and message.startswith("Method doesn't allow unregistered callers")


def test_simulator_validates_the_gemini_dialect(sim: SimulatorProcess) -> None:
    base = sim.base_url("google")
    headers = {"x-goog-api-key": "k"}
    good = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert httpx.post(f"{base}/models/g:generateContent?key=k", json=good).status_code == 200
    assert (
        httpx.post(f"{base}/models/g:streamGenerateContent", json=good, headers=headers).status_code == 400
    )  # no alt=sse
    assert (
        httpx.post(f"{base}/models/g:countTokens", json=good, headers=headers).json()["error"]["status"] == "NOT_FOUND"
    )
    bad = {"contents": [{"role": "system", "parts": [{"text": "hi"}]}]}
    response = httpx.post(f"{base}/models/g:generateContent", json=bad, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_paced_stream_and_empty_mode(sim: SimulatorProcess) -> None:
    body = {"messages": [{"role": "user", "content": "[sim:tokens=20]"}]}
    sim.set("google", tokens_per_second=200)
    started = time.monotonic()
    (chunks, translator), _ = send(sim, body, stream=True)
    assert time.monotonic() - started >= 0.09
    assert translator.done and collect(chunks)["usage"]["completion_tokens"] == 20
    sim.set("google", fail="empty")
    result, _ = send(sim, body)
    assert result["choices"][0]["message"]["content"] == "" and result["choices"][0]["finish_reason"] is None
    (chunks, translator), _ = send(sim, body, stream=True)
    assert not translator.done  # no finishReason ever came: the gateway sees a failed stream
    assert collect(chunks)["content"] == ""


def test_dropped_stream_is_not_done(sim: SimulatorProcess) -> None:
    sim.set("google", fail="drop", drop_after_chunks=3)
    upstream = adapter.request(
        body={"messages": [{"role": "user", "content": "[sim:tokens=10]"}]},
        upstream_model="g",
        base_url=sim.base_url("google"),
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
    assert not translator.done and not translator.failed
    assert collect(chunks)["content"].count(" ") == 2  # three tokens arrived
