"""The real Claude Code CLI (``claude -p``), pointed at the live gateway as its users would point it.

``make agents`` installs ``@anthropic-ai/claude-code`` into ``.agents-node/`` (git-ignored); without it
these tests are skipped. Claude Code talks to a small logging proxy in front of the gateway, so the test
also records (and checks) what it really sends; ``CLAUDE_CODE_LOG`` names a file to keep the bodies in.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from activity.models import Generation
from billing.settlement import settlement_flush
from routing.models import Provider
from tests.factories import make_key
from tests.routing.test_chat_completions import assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = Path(__file__).resolve().parent.parent / ".agents-node" / "node_modules" / ".bin" / "claude"


class LoggingProxy:
    """Forwards every request to ``target`` unchanged and keeps (method, path, headers, JSON body)."""

    def __init__(self, target: str) -> None:
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy.requests.append(("POST", self.path, headers, body))
                forward = {k: v for k, v in headers.items() if k not in ("host", "content-length", "accept-encoding")}
                with httpx.stream("POST", target + self.path, content=raw, headers=forward, timeout=60) as response:
                    self.send_response(response.status_code)
                    for name, value in response.headers.items():
                        if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                            self.send_header(name, value)
                    self.send_header("connection", "close")
                    self.end_headers()
                    for chunk in response.iter_raw():
                        self.wfile.write(chunk)
                        self.wfile.flush()

            def do_GET(self):  # noqa: N802
                proxy.requests.append(("GET", self.path, dict(self.headers.items()), None))
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_claude(proxy_url: str, key: str, model: str, prompt: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": f"{proxy_url}/api",
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", "--model", model],
        env=env, cwd=home, capture_output=True, text=True, timeout=180, check=False,
    )


@pytest.mark.skipif(not CLAUDE.exists(), reason="Claude Code is not installed: run `make agents`")
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("model", "dialect"),
    [("openai/gpt-4o-mini", "openai"), ("anthropic/claude-3.5-haiku", "anthropic"),
     ("google/gemini-2.0-flash-001", "google")],
)
def test_claude_code_answers_through_the_gateway_and_is_charged(gateway, simulator, tmp_path, model, dialect):
    if dialect == "anthropic":
        simulator.set("google-vertex", fail="503")  # Claude's other endpoint speaks Gemini: make Anthropic serve
    bundle = make_key(credits="5")
    proxy = LoggingProxy(gateway.url)
    try:
        done = run_claude(proxy.url, bundle.raw, model, "Say hello in five words.", tmp_path)
    finally:
        proxy.close()
    if log := os.environ.get("CLAUDE_CODE_LOG"):
        Path(log).write_bytes(orjson.dumps([{"method": m, "path": p, "headers": h, "body": b}
                                            for m, p, h, b in proxy.requests], option=orjson.OPT_INDENT_2))
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["is_error"] is False and result["result"].strip(), result

    # What it sent: one streamed Messages call, Bearer auth, Claude Code's shape.
    calls = [(p, h, b) for m, p, h, b in proxy.requests if p.startswith("/api/v1/messages")]
    assert calls and all(p.startswith("/api/v1/messages?beta=true") for p, _, _ in calls), proxy.requests
    path, headers, body = calls[-1]
    assert headers["authorization"] == f"Bearer {bundle.raw}"
    assert body["model"] == model and body["stream"] is True and body["max_tokens"] == 32000
    assert body["tools"] and isinstance(body["system"], list)
    settlement_flush()
    records = list(Generation.objects.filter(account=bundle.account))
    # ...which a provider of the intended dialect answered, in its own dialect.
    served = Provider.objects.get(slug=records[-1].provider_slug)
    assert served.dialect == dialect and simulator.last_request(served.slug), served.slug
    assert len(records) == len(calls) and all(r.cost > 0 for r in records)
    assert_ledger_consistent(bundle.account)
    assert 5 * 10**9 - bundle.account.balance == sum(r.cost for r in records)


def test_make_agents_installs_into_an_ignored_folder():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert "agents:" in makefile and ".agents-node" in makefile
    ignored = subprocess.run(["git", "check-ignore", "-q", ".agents-node/"], cwd=CLAUDE.parents[3], check=False)
    assert ignored.returncode == 0
