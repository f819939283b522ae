"""Plugins through the live gateway: PDF parsing for models without file input, middle-out compression
on small-context endpoints, and web search (``plugins: [{id: "web"}]``) with url_citation annotations."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.money import nanos_to_usd_number
from routing.models import Provider
from routing.plugins.compression import DEFAULT_ON_CONTEXT
from routing.plugins.web_search import SIMULATED_PRICE
from tests.factories import make_key
from tests.routing.gateway_helpers import endpoints_of, error_of, generation, make_test_model, post, stream
from tests.routing.test_chat_completions import assert_ledger_consistent, expected_cost
from tests.routing.test_plugins_file_parser import data_url, make_pdf

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"  # text only; deepinfra is the cheapest
PRICE = {"sort": "price"}


def _file_message(data: bytes, filename: str = "report.pdf", mime: str = "application/pdf") -> dict:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "Summarise the attached report."},
            {"type": "file", "file": {"filename": filename, "file_data": data_url(data, mime)}},
        ],
    }


# --- file parser --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_a_pdf_is_parsed_locally_for_a_model_without_file_input(gateway, simulator, streaming):
    pdf = make_pdf(["Quarterly revenue rose 12 percent.", "Headcount stayed at 41."])
    bundle = make_key(credits="5")
    body = {"model": LLAMA, "max_tokens": 6, "messages": [_file_message(pdf)], "provider": PRICE}
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        usage = events[-2]["usage"]
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
    parts = simulator.last_request("deepinfra")["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "text"]
    assert parts[0]["text"] == "Summarise the attached report."
    assert parts[1]["text"].startswith("report.pdf:\n")
    assert "Quarterly revenue rose 12 percent." in parts[1]["text"] and "Headcount stayed at 41." in parts[1]["text"]
    assert usage["cost"] == nanos_to_usd_number(expected_cost(endpoints_of(LLAMA)[0], usage))  # parsing is free
    assert_ledger_consistent(bundle.account)


def test_a_model_with_file_input_gets_the_pdf_itself(gateway, simulator):
    pdf = make_pdf(["Native reading."])
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": "openai/gpt-4o-mini", "max_tokens": 5, "messages": [_file_message(pdf)]})
    assert response.status_code == 200, response.text
    parts = simulator.last_request("openai")["messages"][0]["content"]
    assert parts[1]["type"] == "file" and parts[1]["file"]["file_data"].startswith("data:application/pdf;base64,")


@pytest.mark.parametrize(
    ("data", "mime", "fragment"),
    [
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<<>>\n%%EOF", "application/pdf", "could not be read"),
        (b"just some text, not a PDF at all", "application/pdf", "is not a PDF"),
        (b"%PDF-1.4 but declared as text", "text/plain", "reads PDFs only"),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
def test_a_broken_pdf_is_a_clear_400_and_costs_nothing(gateway, simulator, data, mime, fragment, streaming):
    bundle = make_key(credits="5")
    body = {"model": LLAMA, "max_tokens": 5, "messages": [_file_message(data, "broken.pdf", mime)], "provider": PRICE}
    response = stream(gateway, bundle, body)[0] if streaming else post(gateway, bundle, body)
    assert response.status_code == 400, response.text
    message = error_of(response)["message"]
    assert "broken.pdf" in message and fragment in message
    assert sum(simulator.stats(e.provider.slug)["requests"] for e in endpoints_of(LLAMA)) == 0
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9


# --- middle-out --------------------------------------------------------------------------------------------------


def _long_conversation(turns: int = 30, words: int = 120) -> list[dict]:
    messages = [{"role": "system", "content": "You are a careful summariser."}]
    for i in range(turns):
        messages.append({"role": "user", "content": " ".join(f"u{i}w{j}" for j in range(words))})
        messages.append({"role": "assistant", "content": " ".join(f"a{i}w{j}" for j in range(words))})
    messages.append({"role": "user", "content": "So, what did we decide?"})
    return messages


def test_middle_out_compresses_by_default_on_small_context_endpoints(gateway, simulator):
    _, endpoint = make_test_model("test/small-context", provider="nebius", context_length=4096)
    assert endpoint.context_length <= DEFAULT_ON_CONTEXT
    messages = _long_conversation()  # about 7,500 tokens
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": "test/small-context", "max_tokens": 50, "messages": messages})
    assert response.status_code == 200, response.text
    sent = simulator.last_request("nebius")["messages"]
    assert len(sent) < len(messages)
    assert sent[0] == messages[0] and sent[-1] == messages[-1]  # the system prompt and the question stay
    assert sent[1] == messages[1]  # the start of the conversation stays, the middle goes
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] + 50 <= 4096  # fits the context with the reply
    assert usage["cost"] == nanos_to_usd_number(expected_cost(endpoint, usage))  # billed on what was sent

    # Turned off explicitly: everything is sent.
    response = post(
        gateway,
        bundle,
        {"model": "test/small-context", "max_tokens": 50, "messages": messages, "plugins": [{"id": "context-compression", "enabled": False}]},
    )
    assert response.status_code == 200
    assert len(simulator.last_request("nebius")["messages"]) == len(messages)
    # A large-context endpoint is not compressed by default.
    response = post(gateway, bundle, {"model": LLAMA, "max_tokens": 5, "messages": messages, "provider": PRICE})
    assert response.status_code == 200
    assert len(simulator.last_request("deepinfra")["messages"]) == len(messages)
    assert_ledger_consistent(bundle.account)


def test_middle_out_applies_per_endpoint_on_fallback(gateway, simulator):
    """The same request is compressed for a small-context fallback endpoint only."""
    make_test_model("test/two-sizes", provider="groq", context_length=131072, prompt=10_000_000, completion=10_000_000)
    make_test_model("test/two-sizes", provider="nebius", context_length=4096, prompt=50_000_000, completion=50_000_000)
    messages = _long_conversation()
    simulator.set("groq", fail="503")
    bundle = make_key(credits="5")
    response = post(gateway, bundle, {"model": "test/two-sizes", "max_tokens": 20, "messages": messages, "provider": PRICE})
    assert response.status_code == 200 and response.json()["provider"] == "Nebius"
    assert len(simulator.last_request("groq")["messages"]) == len(messages)
    assert len(simulator.last_request("nebius")["messages"]) < len(messages)


# --- web search ----------------------------------------------------------------------------------------------------


class _CitingProvider(BaseHTTPRequestHandler):
    """A stand-in OpenAI-compatible provider whose answer cites the first search result it was given."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = "\n".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
        found = re.search(r"URL: (https://([^/\s]+)\S*)", prompt)
        text = f"According to [{found.group(2)}]({found.group(1)}), it went well." if found else "No sources."
        usage = {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            base = {"id": "cite-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
            for piece in re.findall(r"\S+\s*", text):
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode() + b"\n\n")
            self.wfile.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            return
        payload = json.dumps({
            "id": "cite-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def citing_model(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CitingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CITING_TEST_PROVIDER_KEY", "test-key")
    provider = Provider.objects.create(
        slug="citing-test",
        name="Citing Test",
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        api_key_env="CITING_TEST_PROVIDER_KEY",
        trains_on_data=False,
        retains_prompts=False,
    )
    _, endpoint = make_test_model("test/citing", provider=provider)
    yield endpoint
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("how", ["plugin", "online"])
def test_web_search_results_are_cited_as_url_citations_and_the_search_is_charged(gateway, citing_model, streaming, how):
    bundle = make_key(credits="5")
    question = {"role": "user", "content": "Who won the chess olympiad?"}
    body = {"model": "test/citing", "max_tokens": 30, "messages": [question], "plugins": [{"id": "web", "max_results": 3}]}
    if how == "online":
        body = {"model": "test/citing:online", "max_tokens": 30, "messages": [question]}
    if streaming:
        response, events = stream(gateway, bundle, body)
        assert response.status_code == 200 and events[-1] == "[DONE]"
        text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events[:-1] if e.get("choices"))
        annotated = [e["choices"][0]["delta"]["annotations"] for e in events[:-1] if e.get("choices") and "annotations" in e["choices"][0]["delta"]]
        assert len(annotated) == 1
        annotations = annotated[0]
        usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
    else:
        response = post(gateway, bundle, body)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "test/citing"
        message = response.json()["choices"][0]["message"]
        text, annotations = message["content"], message["annotations"]
        usage, generation_id = response.json()["usage"], response.json()["id"]
    assert text.startswith("According to [")
    assert len(annotations) == 1
    citation = annotations[0]
    assert citation["type"] == "url_citation"
    cited = citation["url_citation"]
    assert cited["url"].startswith("https://") and cited["title"] and cited["content"]
    assert text[cited["start_index"] : cited["end_index"]].endswith(f"({cited['url']})")
    model_cost = expected_cost(citing_model, usage)
    assert usage["cost"] == nanos_to_usd_number(model_cost + SIMULATED_PRICE)
    assert generation(generation_id).cost == model_cost + SIMULATED_PRICE
    assert_ledger_consistent(bundle.account)
