"""The hold is sized from what is actually sent to the provider, and the charge is always the real cost.

Through the live gateway and the provider simulator (or a stand-in provider over real HTTP): a small
compressed PDF that the file parser expands to ~48,000 tokens, web search results injected into the
prompt, middle-out compression, ``n`` choices, Gemini tool messages (whose translation adds the
function's name to every tool result), and a provider that reports more than any hold — charged in
full, the balance below zero, the overcharge counted. Ledger amounts are checked to the nano-dollar.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.models import Account
from activity.models import Generation
from billing import metering
from billing.counters import counters
from billing.models import LedgerEntry
from billing.money import nanos_to_usd_number, nanos_to_usd_string, tokens_cost, tokens_cost_ceiling, usd_to_nanos
from billing.selectors import ledger_drift, ledger_sum
from billing.services import credits_grant
from billing.settlement import settlement_flush
from routing.models import Provider
from routing.plugins.web_search import SIMULATED_PRICE
from routing.tokens import prompt_tokens_upper_bound
from tests.factories import make_key
from tests.routing.gateway_helpers import endpoints_of, error_of, make_test_model, post, stream
from tests.routing.test_plugins_file_parser import data_url

pytestmark = pytest.mark.django_db(transaction=True)

LLAMA = "meta-llama/llama-3.1-8b-instruct"  # text only: a PDF is parsed by the gateway; deepinfra is cheapest
GEMINI = "google/gemini-2.0-flash-001"
PRICE = {"sort": "price"}
REPORT_LINE = "revenue rose again in every region this quarter and costs fell"  # 11 tokens


def compressed_pdf(lines: int, text: str = REPORT_LINE) -> bytes:
    """A one-page PDF whose Flate-compressed content stream shows ``text`` on ``lines`` lines."""
    content = ("BT /F1 12 Tf 72 720 Td 14 TL " + f"({text}) Tj T* " * lines + "ET").encode()
    packed = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


@contextmanager
def largest_hold(account_id: int):
    """The largest credit hold the account had while the block ran (polled every couple of ms)."""
    seen = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen[0] = max(seen[0], counters().snapshot(account_id)["held"] or 0)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def usage_entry(generation_id: str) -> LedgerEntry:
    return LedgerEntry.objects.get(idempotency_key=f"gen:{generation_id}")


def assert_charged_exactly(account: Account, credits: int, generation_id: str, charged: int) -> None:
    """The generation, its ledger entry and the balance all carry exactly ``charged``."""
    settlement_flush()
    account.refresh_from_db()
    assert Generation.objects.get(id=generation_id).cost == charged
    assert usage_entry(generation_id).amount == -charged
    assert account.balance == credits - charged
    assert ledger_sum(account_id=account.id) == account.balance
    assert ledger_drift(account_id=account.id) == []
    assert counters().snapshot(account.id)["held"] == 0


def price(endpoint, usage: dict) -> int:
    return (
        tokens_cost(usage["prompt_tokens"], endpoint.price_prompt)
        + tokens_cost(usage["completion_tokens"], endpoint.price_completion)
        + endpoint.price_request
    )


def _pdf_message(pdf: bytes) -> dict:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "Summarise the attached report."},
            {"type": "file", "file": {"filename": "report.pdf", "file_data": data_url(pdf, "application/pdf")}},
        ],
    }


# --- the file parser ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_a_small_compressed_pdf_is_held_and_charged_for_all_the_text_it_expands_to(gateway, simulator, streaming):
    pdf = compressed_pdf(4400)
    assert len(pdf) < 2_000  # about 1.6 KB on the wire ...
    endpoint = endpoints_of(LLAMA)[0]
    simulator.set(endpoint.provider.slug, latency_ms=300)
    bundle = make_key(credits="5")
    credits, before = usd_to_nanos("5"), metering.overcharge_count()
    body = {"model": LLAMA, "max_tokens": 8, "messages": [_pdf_message(pdf)], "provider": PRICE}
    with largest_hold(bundle.account.id) as held:
        if streaming:
            response, events = stream(gateway, bundle, body)
            usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
        else:
            response = post(gateway, bundle, body)
            usage, generation_id = response.json()["usage"], response.json()["id"]
    assert response.status_code == 200
    assert usage["prompt_tokens"] > 48_000  # ... about 48,000 prompt tokens once parsed
    charged = price(endpoint, usage)
    assert usage["cost"] == nanos_to_usd_number(charged)
    assert held[0] >= charged > tokens_cost(1_600 + 8, endpoint.price_completion)  # not a flat guess for the file
    assert metering.overcharge_count() == before
    assert_charged_exactly(bundle.account, credits, generation_id, charged)


def test_a_pdf_whose_text_the_balance_cannot_cover_is_refused_before_any_provider_call(gateway, simulator):
    pdf = compressed_pdf(4400)
    endpoint = endpoints_of(LLAMA)[0]
    affordable = tokens_cost_ceiling(20_000, endpoint.price_prompt)  # far more than a flat per-file guess
    bundle = make_key(credits=nanos_to_usd_string(affordable))
    body = {"model": LLAMA, "max_tokens": 8, "messages": [_pdf_message(pdf)], "provider": PRICE}
    response = post(gateway, bundle, body)
    assert response.status_code == 402, response.text
    message = error_of(response)["message"]
    assert message.startswith("Prompt tokens limit exceeded: ")
    asked, _, can = message.removeprefix("Prompt tokens limit exceeded: ").partition(" > ")
    assert int(asked) > 48_000 and int(can.split(".")[0]) < 20_100
    assert simulator.stats(endpoint.provider.slug)["requests"] == 0
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == usd_to_nanos(nanos_to_usd_string(affordable))
    assert counters().snapshot(bundle.account.id)["held"] == 0


# --- web search ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_web_results_injected_into_the_prompt_are_held_for_and_charged(gateway, simulator, streaming):
    endpoint = endpoints_of(LLAMA)[0]
    simulator.set(endpoint.provider.slug, latency_ms=300)
    bundle = make_key(credits="5")
    credits, before = usd_to_nanos("5"), metering.overcharge_count()
    question = {"role": "user", "content": "Who won the chess olympiad?"}
    body = {"model": LLAMA, "max_tokens": 10, "messages": [question], "plugins": [{"id": "web", "max_results": 5}], "provider": PRICE}
    with largest_hold(bundle.account.id) as held:
        if streaming:
            response, events = stream(gateway, bundle, body)
            usage, generation_id = events[-2]["usage"], response.headers["x-generation-id"]
        else:
            response = post(gateway, bundle, body)
            usage, generation_id = response.json()["usage"], response.json()["id"]
    assert response.status_code == 200
    sent = simulator.last_request(endpoint.provider.slug)["messages"]
    assert "URL: https://" in json.dumps(sent)  # the results went to the provider ...
    assert usage["prompt_tokens"] > prompt_tokens_upper_bound({"messages": [question]}) * 5  # ... and were billed
    charged = price(endpoint, usage) + SIMULATED_PRICE
    assert usage["cost"] == nanos_to_usd_number(charged)
    assert held[0] >= charged
    assert metering.overcharge_count() == before
    assert_charged_exactly(bundle.account, credits, generation_id, charged)


# --- middle-out compression ----------------------------------------------------------------------------------------


def _long_conversation(turns: int = 30, words: int = 120) -> list[dict]:
    messages = [{"role": "system", "content": "You are a careful summariser."}]
    for i in range(turns):
        messages.append({"role": "user", "content": " ".join(f"u{i}w{j}" for j in range(words))})
        messages.append({"role": "assistant", "content": " ".join(f"a{i}w{j}" for j in range(words))})
    messages.append({"role": "user", "content": "So, what did we decide?"})
    return messages


def test_a_compressed_prompt_is_held_for_what_is_sent_not_what_was_asked(gateway, simulator):
    """The full conversation's worst case is more than the balance; the compressed one, sent, is not."""
    _, endpoint = make_test_model("test/compressed-hold", provider="nebius", context_length=4096)
    simulator.set("nebius", latency_ms=300)
    messages = _long_conversation()
    unsent_worst = tokens_cost_ceiling(prompt_tokens_upper_bound({"messages": messages}), endpoint.price_prompt)
    credits = unsent_worst // 2  # refused if the hold were sized from the request before compression
    bundle = make_key(credits=nanos_to_usd_string(credits))
    credits = Account.objects.get(id=bundle.account.id).balance
    before = metering.overcharge_count()
    with largest_hold(bundle.account.id) as held:
        response = post(gateway, bundle, {"model": "test/compressed-hold", "max_tokens": 50, "messages": messages})
    assert response.status_code == 200, response.text
    assert len(simulator.last_request("nebius")["messages"]) < len(messages)
    usage = response.json()["usage"]
    charged = price(endpoint, usage)
    assert usage["cost"] == nanos_to_usd_number(charged)
    assert charged <= held[0] < unsent_worst
    assert metering.overcharge_count() == before
    assert_charged_exactly(bundle.account, credits, response.json()["id"], charged)


# --- n choices -------------------------------------------------------------------------------------------------------


def test_n_choices_are_each_held_for(gateway, simulator):
    _, endpoint = make_test_model(
        "test/n-choices", provider="nebius", completion=1_000_000_000, supported_parameters=("max_tokens", "n")
    )
    one = tokens_cost_ceiling(1_000, endpoint.price_completion)  # 1,000 output tokens: $0.001
    bundle = make_key(credits=nanos_to_usd_string(one * 2))  # covers one choice's output, not four
    body = {"model": "test/n-choices", "max_tokens": 1_000, "n": 4}
    response = post(gateway, bundle, body)
    assert response.status_code == 402, response.text
    message = error_of(response)["message"]
    assert "You requested up to 1000 tokens, but can only afford" in message
    assert int(message.split("can only afford ")[1].split(".")[0]) < 500  # two choices' worth split four ways
    assert post(gateway, bundle, {**body, "n": 1}).status_code == 200


# --- Gemini tool messages --------------------------------------------------------------------------------------------


def _tool_conversation(results: int) -> list[dict]:
    """One tool call answered by many short results (a tool that reports progress)."""
    call = {"id": "call_0", "type": "function", "function": {"name": "poll_the_quarterly_report_job", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Is the report ready?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    return messages + [{"role": "tool", "tool_call_id": "call_0", "content": "ok"} for _ in range(results)]


def test_gemini_tool_results_cost_more_than_the_openai_body_suggests_and_are_held_for(gateway, simulator):
    """Gemini gets each tool result as a functionResponse with the function's name: more prompt tokens
    than the OpenAI-shaped body bounds. That case used to be charged beyond its hold; the hold is now
    sized from the translated request."""
    endpoint = next(e for e in endpoints_of(GEMINI) if e.provider.slug == "google-ai-studio")
    simulator.set("google-ai-studio", latency_ms=300)
    messages = _tool_conversation(150)
    bundle = make_key(credits="5")
    credits, before = usd_to_nanos("5"), metering.overcharge_count()
    body = {"model": GEMINI, "max_tokens": 1, "messages": messages, "provider": {"order": ["google-ai-studio"]}}
    with largest_hold(bundle.account.id) as held:
        response = post(gateway, bundle, body)
    assert response.status_code == 200, response.text
    upstream = simulator.last_request("google-ai-studio")
    assert "functionResponse" in json.dumps(upstream["contents"])
    usage = response.json()["usage"]
    openai_bound = prompt_tokens_upper_bound({"messages": messages})
    assert usage["prompt_tokens"] > openai_bound  # what the old hold was sized from did not cover it
    charged = price(endpoint, usage)
    assert usage["cost"] == nanos_to_usd_number(charged)
    old_hold = (
        tokens_cost_ceiling(openai_bound, endpoint.price_prompt)
        + tokens_cost_ceiling(1, endpoint.price_completion)
        + endpoint.price_request
    )
    assert held[0] >= charged > old_hold
    assert metering.overcharge_count() == before
    assert_charged_exactly(bundle.account, credits, response.json()["id"], charged)


# --- a provider that reports more than any hold ------------------------------------------------------------------------


OVER_REPORTED = {"prompt_tokens": 5_000_000, "completion_tokens": 3, "total_tokens": 5_000_003}


class _OverReportingProvider(BaseHTTPRequestHandler):
    """An OpenAI-compatible provider that bills five million prompt tokens for a one-line question."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload = json.dumps({
            "id": "over-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}, "finish_reason": "stop"}],
            "usage": OVER_REPORTED,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def over_reporting_model(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OverReportingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OVER_TEST_PROVIDER_KEY", "test-key")
    provider = Provider.objects.create(
        slug="over-test", name="Over Test", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        api_key_env="OVER_TEST_PROVIDER_KEY", trains_on_data=False, retains_prompts=False,
    )
    _, endpoint = make_test_model("test/over-reporting", provider=provider)  # $0.10 / $0.20 per million
    yield endpoint
    server.shutdown()
    server.server_close()


def test_a_cost_above_its_hold_is_charged_in_full_the_balance_goes_negative_and_it_is_counted(gateway, over_reporting_model):
    endpoint = over_reporting_model
    bundle = make_key(credits="0.01")
    before = metering.overcharge_count()
    response = post(gateway, bundle, {"model": "test/over-reporting", "max_tokens": 5})
    assert response.status_code == 200, response.text
    charged = tokens_cost(5_000_000, endpoint.price_prompt) + tokens_cost(3, endpoint.price_completion)
    assert charged == usd_to_nanos("0.5000006")
    assert response.json()["usage"]["cost"] == nanos_to_usd_number(charged)  # the real cost, not the hold
    assert metering.overcharge_count() == before + 1
    assert_charged_exactly(bundle.account, usd_to_nanos("0.01"), response.json()["id"], charged)
    assert bundle.account.balance == usd_to_nanos("0.01") - charged < 0

    # Below zero nothing more is served; credits added pay the debt first.
    assert post(gateway, bundle, {"model": "test/over-reporting", "max_tokens": 5}).status_code == 402
    credits_grant(account=bundle.account, amount=usd_to_nanos("1"), idempotency_key=f"test-topup:{bundle.account.id}")
    bundle.account.refresh_from_db()
    assert bundle.account.balance == usd_to_nanos("1.01") - charged
    assert ledger_drift(account_id=bundle.account.id) == []
