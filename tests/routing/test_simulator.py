"""Tests of the provider simulator, run as a real subprocess (no Django involved)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from routing.simulator.text import generate_tokens, natural_length
from routing.simulator.tokens import count_message_tokens, count_tokens
from tests.simulator_process import SimulatorError, SimulatorProcess

AUTH = {"Authorization": "Bearer test-key"}
CONFIG = {
    "default": {"latency_ms": 0},
    "providers": {"fixed": {"completion_tokens": 5}, "slowpoke": {"latency_ms": 150}},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(CONFIG) as process:
        yield process
    assert "Traceback" not in process.stderr_output, process.stderr_output


@pytest.fixture(autouse=True)
def _reset(sim: SimulatorProcess) -> None:
    sim.reset()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0, headers=AUTH) as http:
        yield http


def chat_body(content: str = "Hello, simulator!", **extra: Any) -> dict[str, Any]:
    return {"model": "acme/model-1", "messages": [{"role": "user", "content": content}], **extra}


def chat(client: httpx.Client, sim: SimulatorProcess, slug: str = "acme", **body: Any) -> httpx.Response:
    return client.post(f"{sim.base_url(slug)}/chat/completions", json=chat_body(**body))


def read_sse(response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
    """The JSON events of an SSE stream and whether it ended with [DONE]."""
    events: list[dict[str, Any]] = []
    done = False
    for line in response.iter_lines():
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        if data == "[DONE]":
            done = True
            continue
        assert not done, "event after [DONE]"
        events.append(json.loads(data))
    return events, done


def stream_chat(client: httpx.Client, sim: SimulatorProcess, slug: str = "acme", **body: Any):
    return client.stream("POST", f"{sim.base_url(slug)}/chat/completions", json=chat_body(stream=True, **body))


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert "type" in error and "code" in error
    return error


# --- pure functions --------------------------------------------------------------------------


def test_tokenizer_and_prompt_bound() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "héllo ✓"}]},
    ]
    text_bytes = sum(len(t.encode()) for t in ("Be brief.", "héllo ✓"))
    assert count_message_tokens(messages) == (3 + 2) + 4 * 2 + 3
    assert count_message_tokens(messages) <= text_bytes + 4 * 2 + 3


@pytest.mark.parametrize("length", [0, 1, 2, 7, 40, 333])
def test_generated_tokens_are_honest(length: int) -> None:
    for seed in (0, 1, 2**63 + 12345):
        tokens = generate_tokens(seed, length)
        assert len(tokens) == length
        assert all(len(token.encode()) >= 1 for token in tokens)
        assert count_tokens("".join(tokens)) == length
        assert 8 <= natural_length(seed) <= 40


# --- non-streaming ---------------------------------------------------------------------------


def test_chat_completion_shape(sim: SimulatorProcess, client: httpx.Client) -> None:
    response = chat(client, sim)
    assert response.status_code == 200
    data = response.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "acme/model-1"
    assert data["system_fingerprint"] == "fp_sim"
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    usage = data["usage"]
    assert 8 <= usage["completion_tokens"] <= 40
    assert count_tokens(content) == usage["completion_tokens"]
    assert usage["prompt_tokens"] == count_tokens("Hello, simulator!") + 4 + 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert sim.stats("acme") == {
        "requests": 1,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "tokens_emitted": usage["completion_tokens"],
    }


def test_determinism(sim: SimulatorProcess, client: httpx.Client) -> None:
    first = chat(client, sim, content="Tell me a story").json()["choices"][0]["message"]["content"]
    second = chat(client, sim, content="Tell me a story").json()["choices"][0]["message"]["content"]
    other_prompt = chat(client, sim, content="Tell me a joke").json()["choices"][0]["message"]["content"]
    other_provider = chat(client, sim, slug="other", content="Tell me a story").json()["choices"][0]["message"][
        "content"
    ]
    assert first == second
    assert first != other_prompt
    assert first != other_provider
    with stream_chat(client, sim, content="Tell me a story") as response:
        events, _ = read_sse(response)
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert streamed == first


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_with_length(sim: SimulatorProcess, client: httpx.Client, param: str) -> None:
    full = chat(client, sim, content="cap me [sim:tokens=20]").json()
    capped = chat(client, sim, content="cap me [sim:tokens=20]", **{param: 6}).json()
    assert full["usage"]["completion_tokens"] == 20 and full["choices"][0]["finish_reason"] == "stop"
    assert capped["usage"]["completion_tokens"] == 6
    assert capped["choices"][0]["finish_reason"] == "length"
    text = capped["choices"][0]["message"]["content"]
    assert count_tokens(text) == 6
    assert full["choices"][0]["message"]["content"].startswith(text)


def test_sim_tokens_control_and_config_length(sim: SimulatorProcess, client: httpx.Client) -> None:
    data = chat(client, sim, content="exactly [sim:tokens=13] please").json()
    assert data["usage"]["completion_tokens"] == 13
    assert count_tokens(data["choices"][0]["message"]["content"]) == 13
    assert chat(client, sim, content="zero [sim:tokens=0]").json()["choices"][0]["message"]["content"] == ""
    fixed = chat(client, sim, slug="fixed").json()
    assert fixed["usage"]["completion_tokens"] == 5
    assert chat(client, sim, slug="fixed", max_tokens=2).json()["usage"]["completion_tokens"] == 2


def test_legacy_completions(sim: SimulatorProcess, client: httpx.Client) -> None:
    url = f"{sim.base_url('acme')}/completions"
    data = client.post(url, json={"model": "m", "prompt": "Once upon a time", "max_tokens": 4}).json()
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-")
    (choice,) = data["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["finish_reason"] == "length"
    assert count_tokens(choice["text"]) == data["usage"]["completion_tokens"] == 4
    assert data["usage"]["prompt_tokens"] == 4
    body = {"model": "m", "prompt": "Once upon a time", "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", url, json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events, done = read_sse(response)
    assert done
    assert all(e["object"] == "text_completion" for e in events)
    texts = [e["choices"][0]["text"] for e in events if e["choices"] and e["choices"][0]["finish_reason"] is None]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == len(texts)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_models_stub(sim: SimulatorProcess, client: httpx.Client) -> None:
    response = client.get(f"{sim.base_url('acme')}/models")
    assert response.json() == {"object": "list", "data": []}


# --- streaming -------------------------------------------------------------------------------


def test_streaming_shape_and_honest_usage(sim: SimulatorProcess, client: httpx.Client) -> None:
    with stream_chat(client, sim, stream_options={"include_usage": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events, done = read_sse(response)
    assert done
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == "acme/model-1" for e in events)
    assert len({e["id"] for e in events}) == 1
    first, *content_events, final, usage_event = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(len(e["choices"][0]["delta"]["content"].encode()) >= 1 for e in content_events)
    assert final["choices"][0]["delta"] == {} and final["choices"][0]["finish_reason"] == "stop"
    assert usage_event["choices"] == []
    usage = usage_event["usage"]
    text = "".join(e["choices"][0]["delta"]["content"] for e in content_events)
    assert usage["completion_tokens"] == len(content_events) == count_tokens(text)
    assert sim.stats("acme")["tokens_emitted"] == len(content_events)
    assert sim.stats("acme")["completed"] == 1


def test_streaming_without_usage_and_with_cap(sim: SimulatorProcess, client: httpx.Client) -> None:
    with stream_chat(client, sim, max_tokens=3) as response:
        events, done = read_sse(response)
    assert done
    assert all("usage" not in e for e in events)
    assert len(events) == 1 + 3 + 1
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_paced_streaming(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", tokens_per_second=100)
    started = time.monotonic()
    with stream_chat(client, sim, content="[sim:tokens=20]", stream_options={"include_usage": True}) as response:
        events, done = read_sse(response)
    assert time.monotonic() - started >= 0.18
    assert done and events[-1]["usage"]["completion_tokens"] == 20
    assert len([e for e in events if e["choices"] and e["choices"][0]["delta"].get("content")]) == 20


def test_latency_and_non_streaming_generation_time(sim: SimulatorProcess, client: httpx.Client) -> None:
    started = time.monotonic()
    assert chat(client, sim, slug="slowpoke").status_code == 200
    assert time.monotonic() - started >= 0.14
    sim.set("acme", tokens_per_second=100)
    started = time.monotonic()
    assert chat(client, sim, content="[sim:tokens=20]").json()["usage"]["completion_tokens"] == 20
    assert time.monotonic() - started >= 0.18


# --- bad requests ----------------------------------------------------------------------------


def test_missing_auth_is_401(sim: SimulatorProcess) -> None:
    response = httpx.post(f"{sim.base_url('acme')}/chat/completions", json=chat_body())
    assert assert_openai_error(response, 401)["type"] == "invalid_request_error"
    response = httpx.post(
        f"{sim.base_url('acme')}/chat/completions", json=chat_body(), headers={"Authorization": "Basic x"}
    )
    assert_openai_error(response, 401)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        json.dumps({"model": "m"}).encode(),
        json.dumps({"model": "m", "messages": []}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
        json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}).encode(),
        json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}).encode(),
        json.dumps({"model": "m", "messages": ["hi"]}).encode(),
    ],
)
def test_bad_chat_requests_are_400(sim: SimulatorProcess, client: httpx.Client, body: bytes) -> None:
    response = client.post(f"{sim.base_url('acme')}/chat/completions", content=body)
    assert_openai_error(response, 400)


def test_bad_legacy_request_is_400(sim: SimulatorProcess, client: httpx.Client) -> None:
    assert_openai_error(client.post(f"{sim.base_url('acme')}/completions", json={"model": "m"}), 400)


def test_unknown_route_is_json_404(sim: SimulatorProcess, client: httpx.Client) -> None:
    assert_openai_error(client.get(f"{sim.url}/nope"), 404)


# --- failure modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["500", "502", "503"])
def test_server_error_modes(sim: SimulatorProcess, client: httpx.Client, status: str) -> None:
    sim.set("acme", fail=status)
    assert_openai_error(chat(client, sim), int(status))
    with stream_chat(client, sim) as response:
        response.read()
        assert_openai_error(response, int(status))
    assert sim.stats("acme")["failed"] == 2


def test_rate_limit_mode(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", fail="429")
    response = chat(client, sim)
    assert_openai_error(response, 429)
    assert response.headers["Retry-After"] == "1"
    sim.patch("acme", retry_after=7)
    assert chat(client, sim).headers["Retry-After"] == "7"


def test_timeout_mode(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", fail="timeout")
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{sim.base_url('acme')}/chat/completions", json=chat_body(), timeout=0.3)
    assert sim.stats("acme")["failed"] == 1


def test_drop_mode_streaming(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", fail="drop")
    contents: list[str] = []
    done = False
    with pytest.raises(httpx.RemoteProtocolError), stream_chat(client, sim, content="[sim:tokens=10]") as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    contents.append(delta["content"])
    assert not done
    assert len(contents) == 3
    assert sim.wait_for_stats("acme", lambda s: s["failed"] == 1)["tokens_emitted"] == 3
    sim.patch("acme", drop_after_chunks=1)
    with pytest.raises(httpx.RemoteProtocolError), stream_chat(client, sim) as response:
        response.read()


def test_drop_mode_non_streaming(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", fail="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, sim)


def test_empty_mode(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", fail="empty")
    data = chat(client, sim).json()
    assert data["choices"][0]["message"]["content"] == ""
    assert data["choices"][0]["finish_reason"] is None
    assert data["usage"]["completion_tokens"] == 0
    with stream_chat(client, sim, stream_options={"include_usage": True}) as response:
        events, done = read_sse(response)
    assert done
    assert not any(e["choices"] and e["choices"][0]["delta"].get("content") for e in events)
    assert events[-1]["usage"]["completion_tokens"] == 0


def test_fail_count_then_healthy(sim: SimulatorProcess, client: httpx.Client) -> None:
    settings = sim.set("acme", fail="503", fail_count=2)
    assert settings["fail_remaining"] == 2
    assert [chat(client, sim).status_code for _ in range(4)] == [503, 503, 200, 200]
    assert sim.settings("acme")["fail_remaining"] == 0
    assert sim.stats("acme") | {"tokens_emitted": 0} == {
        "requests": 4,
        "completed": 2,
        "failed": 2,
        "cancelled": 0,
        "tokens_emitted": 0,
    }


def test_fail_rate_is_seeded_and_reproducible(sim: SimulatorProcess, client: httpx.Client) -> None:
    def run() -> list[int]:
        sim.set("acme", fail="500", fail_rate=0.5)
        return [chat(client, sim).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(500) < 30


# --- control API -----------------------------------------------------------------------------


def test_control_get_put_patch_reset(sim: SimulatorProcess) -> None:
    assert sim.settings("fixed")["completion_tokens"] == 5
    assert sim.settings("brand-new")["latency_ms"] == 0  # any slug works
    put = sim.set("fixed", latency_ms=10)
    assert put["latency_ms"] == 10 and put["completion_tokens"] is None  # PUT replaces
    patched = sim.patch("fixed", tokens_per_second=50, fail=503)
    assert patched["latency_ms"] == 10 and patched["tokens_per_second"] == 50 and patched["fail"] == "503"
    sim.reset()
    assert sim.settings("fixed")["completion_tokens"] == 5
    assert sim.settings("fixed")["fail"] is None


@pytest.mark.parametrize(
    "settings",
    [
        {"fail": "418"},
        {"latency_ms": -1},
        {"fail_rate": 2},
        {"bogus": 1},
        {"fail_count": 1.5},
        {"tokens_per_second": "x"},
    ],
)
def test_control_rejects_bad_settings(sim: SimulatorProcess, settings: dict[str, Any]) -> None:
    response = sim.client.patch("/_control/providers/acme", json=settings)
    assert_openai_error(response, 400)
    with pytest.raises(SimulatorError):
        sim.patch("acme", **settings)


def test_stats_and_last_request(sim: SimulatorProcess, client: httpx.Client) -> None:
    assert sim.last_request("acme") is None
    chat(client, sim, temperature=0.3, max_tokens=9, tools=[{"type": "function", "function": {"name": "f"}}])
    last = sim.last_request("acme")
    assert last is not None and last["temperature"] == 0.3 and last["max_tokens"] == 9
    assert last["tools"][0]["function"]["name"] == "f"
    assert sim.last_headers("acme")["authorization"] == "Bearer test-key"
    assert sim.stats()["acme"]["requests"] == 1
    sim.reset()
    assert sim.stats() == {
        "fixed": {"requests": 0, "completed": 0, "failed": 0, "cancelled": 0, "tokens_emitted": 0},
        "slowpoke": {"requests": 0, "completed": 0, "failed": 0, "cancelled": 0, "tokens_emitted": 0},
    }
    assert sim.last_request("acme") is None


def test_health(sim: SimulatorProcess) -> None:
    assert sim.client.get("/_control/health").json() == {"ok": True}


# --- cancellation ----------------------------------------------------------------------------


def test_client_disconnect_is_counted_as_cancelled(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.set("acme", tokens_per_second=20)
    received = 0
    with stream_chat(client, sim, content="[sim:tokens=40]") as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                received += 1
                if received == 2:
                    break
    stats = sim.wait_for_stats("acme", lambda s: s["cancelled"] == 1, timeout=3)
    assert stats["completed"] == 0 and stats["failed"] == 0
    assert 2 <= stats["tokens_emitted"] < 40
    time.sleep(0.3)  # generation stopped: nothing more is emitted
    assert sim.stats("acme")["tokens_emitted"] == stats["tokens_emitted"]


def test_client_disconnect_during_latency_is_cancelled(sim: SimulatorProcess) -> None:
    sim.set("acme", latency_ms=5000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sim.base_url('acme')}/chat/completions", json=chat_body(), headers=AUTH, timeout=0.2)
    assert sim.wait_for_stats("acme", lambda s: s["cancelled"] == 1, timeout=3)["completed"] == 0


def test_simulator_survives_a_burst(sim: SimulatorProcess, client: httpx.Client) -> None:
    for _ in range(200):
        assert chat(client, sim).status_code == 200
    assert sim.stats("acme")["completed"] == 200
