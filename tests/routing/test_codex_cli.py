"""The real Codex CLI (``@openai/codex``, installed by ``make agents-codex``) pointed at the live gateway
with a custom model provider on the Responses wire API, as its users configure it.

A small logging proxy sits between Codex and the gateway so the test can say what Codex really sent
(``CODEX_LOG=path`` keeps the bodies). Skips only when Codex is not installed.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from activity.models import Generation
from billing.settlement import settlement_flush
from tests.factories import make_key
from tests.routing.test_chat_completions import assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)

CODEX = Path(__file__).resolve().parents[2] / ".agents-node" / "node_modules" / ".bin" / "codex"
MODEL = "openai/gpt-4o"


class LoggingProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the gateway unchanged (streaming the answer back) and keeps its body."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[dict] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "accept-encoding")}
        record = {"method": self.command, "path": self.path, "headers": dict(self.headers), "status": None}
        if body:
            try:
                record["body"] = json.loads(body)
            except ValueError:
                record["body"] = body.decode("utf-8", "replace")
        self.server.seen.append(record)
        with httpx.stream(self.command, self.server.target + self.path, content=body, headers=headers,
                          timeout=60) as response:
            record["status"] = response.status_code
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(name, value)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            events = []
            for chunk in response.iter_raw():
                events.append(chunk)
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            record["answer"] = b"".join(events).decode("utf-8", "replace")

    do_GET = do_POST = _forward


@pytest.fixture
def proxy(gateway):
    server = LoggingProxy(gateway.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    if os.environ.get("CODEX_LOG"):
        Path(os.environ["CODEX_LOG"]).write_text(json.dumps(server.seen, indent=1))


def codex_exec(proxy: LoggingProxy, bundle, tmp_path: Path, prompt: str) -> tuple[subprocess.CompletedProcess, str]:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{MODEL}"\n'
        'model_provider = "platform"\n'
        "[model_providers.platform]\n"
        'name = "OpenRouter clone"\n'
        f'base_url = "{proxy.url}/api/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "PLATFORM_API_KEY"\n'
        "[analytics]\nenabled = false\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    last = tmp_path / "last.txt"
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home),
        "PLATFORM_API_KEY": bundle.raw, "NO_COLOR": "1",
    }
    result = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "-s", "read-only", "-C", str(work), "-o", str(last), prompt],
        env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    return result, last.read_text() if last.exists() else ""


def posts(proxy: LoggingProxy) -> list[dict]:
    return [r for r in proxy.seen if r["method"] == "POST" and r["path"].startswith("/api/v1/responses")]


@pytest.mark.skipif(not CODEX.exists(), reason="Codex is not installed (make agents-codex)")
def test_codex_exec_answers_through_the_responses_api(gateway, proxy, tmp_path):
    bundle = make_key(credits="5")
    result, last = codex_exec(proxy, bundle, tmp_path, "Say hello in a few words. [sim:tokens=6]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert last.strip(), result.stderr[-3000:]  # Codex found its final message (response.output_item.done)
    sent = posts(proxy)
    assert sent and all(r["status"] == 200 for r in sent)
    body = sent[0]["body"]
    assert body["model"] == MODEL and body["stream"] is True and body["store"] is False
    assert "response.completed" in sent[0]["answer"]
    settlement_flush()
    generations = list(Generation.objects.filter(account_id=bundle.account.id))
    assert len(generations) == len(sent)
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9 - sum(g.cost for g in generations)


@pytest.mark.skipif(not CODEX.exists(), reason="Codex is not installed (make agents-codex)")
def test_codex_tool_round_trip_is_stateless(gateway, proxy, tmp_path):
    """The model calls Codex's shell tool; Codex runs it and sends the whole history back with its output."""
    bundle = make_key(credits="5")
    result, last = codex_exec(proxy, bundle, tmp_path, "List the files here. [sim:tool=exec_command]")
    sent = posts(proxy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(sent) >= 2 and all(r["status"] == 200 for r in sent), [r["status"] for r in sent]
    assert '"type":"function_call"' in sent[0]["answer"].replace(" ", "")
    second = sent[1]["body"]
    kinds = [item.get("type") for item in second["input"]]
    assert "function_call" in kinds and "function_call_output" in kinds
    assert second.get("previous_response_id") is None
    assert last.strip()
    settlement_flush()
    generations = list(Generation.objects.filter(account_id=bundle.account.id))
    assert len(generations) == len(sent)
    assert_ledger_consistent(bundle.account)
    assert bundle.account.balance == 5 * 10**9 - sum(g.cost for g in generations)
