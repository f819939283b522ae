"""Two gateway processes on one PostgreSQL and one Redis behave as one gateway.

Each test starts two real server processes (uvicorn, as deployed) on the test database and the
test Redis, and sends requests to both: the credit holds, the free-model limits, key changes
and the settlement writers must all work across processes. Skipped unless the suite runs on
PostgreSQL with ``REDIS_URL`` (as CI does): the embedded default is one process by design.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from accounts.models import ApiKey
from accounts.services import api_key_update
from activity.models import Generation
from billing.models import LedgerEntry
from billing.selectors import ledger_drift, ledger_sum
from routing.services import catalog_outage_set
from tests.factories import make_key
from tests.live_server import free_port
from tests.routing.test_chat_completions import multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
FREE_MODEL = "meta-llama/llama-3.3-70b-instruct:free"
METRICS_TOKEN = "scale-out-scraper"


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class GatewayProcess:
    """``uvicorn openrouter_site.asgi:application`` in its own process, on the test's database and Redis."""

    def __init__(self, simulator_url: str, log: Path, metrics_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "COUNTER_PREFIX": settings.COUNTER_PREFIX,
            "PROVIDER_SIMULATOR_URL": simulator_url,
            "DJANGO_SETTINGS_MODULE": "openrouter_site.settings",
            "DEBUG": "0",
            # a deployment has its own secrets (the platform refuses the public development values with DEBUG off)
            "SECRET_KEY": secrets.token_urlsafe(40),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
            "CRYPTO_WEBHOOK_SECRET": secrets.token_hex(16),
            "METRICS_DIR": str(metrics_dir),  # /metrics sums both processes
            "METRICS_TOKEN": METRICS_TOKEN,
        }
        cmd = [
            sys.executable,
            "-m",
            "openrouter_site.uvicorn_server",  # uvicorn as deployed (Procfile)
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "openrouter_site.asgi:application",
        ]
        self.log = log
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway process exited:\n{self.log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}/models", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"gateway process did not start:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()  # uvicorn's shutdown writes what its settlement writer still holds
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def two_gateways(catalog, simulator, tmp_path):
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("several gateway processes need PostgreSQL and REDIS_URL")
    simulator.reset()
    servers = [GatewayProcess(simulator.url, tmp_path / f"gateway-{n}.log", tmp_path) for n in (1, 2)]
    try:
        for server in servers:
            server.wait_ready()
        warm = make_key(credits="1")  # catalog, pools and connections loaded in both before the test
        slug, _ = multi_provider_model()
        for server in servers:
            response = httpx.post(
                f"{server.url}/chat/completions", json=_body(slug, 4), headers=warm.headers, timeout=30
            )
            assert response.status_code == 200, response.text
        yield servers
    finally:
        for server in servers:
            server.stop()


def _body(model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "provider": {"sort": "price"},
    }


def _generations_written(account_id: int, expected: int, timeout: float = 20.0) -> list[str]:
    """Generation ids of the account once ``expected`` are written (the writers flush every few ms)."""
    deadline = time.monotonic() + timeout
    while True:
        ids = list(Generation.objects.filter(account_id=account_id).values_list("id", flat=True))
        if len(ids) >= expected or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


def test_a_burst_split_over_two_processes_never_overspends(two_gateways, simulator):
    slug, endpoints = multi_provider_model()
    for endpoint in endpoints:
        simulator.set(endpoint.provider.slug, latency_ms=300)  # every request holds while the others arrive
    # Each request may cost about a tenth of the $0.002 balance: ten of forty can be served.
    max_tokens = max(math.ceil(200_000 * 1_000_000 / endpoints[0].price_completion), 1)
    bundle = make_key(credits="0.002")
    body = _body(slug, max_tokens)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as client:
            return await asyncio.gather(
                *[
                    client.post(f"{two_gateways[n % 2].url}/chat/completions", json=body, headers=bundle.headers)
                    for n in range(40)
                ]
            )

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(402) > 0, "the balance should not cover all forty requests"
    served = {r.json()["id"] for r in responses if r.status_code == 200}
    assert served

    ids = _generations_written(bundle.account.id, len(served))
    assert sorted(ids) == sorted(served)  # each generation exactly once, whichever process served it
    bundle.account.refresh_from_db()
    charged = sum(Generation.objects.filter(account=bundle.account).values_list("cost", flat=True))
    assert bundle.account.balance >= 0
    assert bundle.account.balance == 2_000_000 - charged
    assert ledger_sum(account_id=bundle.account.id) == bundle.account.balance
    assert ledger_drift() == []


def test_free_model_limits_count_across_processes(two_gateways):
    bundle = make_key(credits="1")
    if time.time() % 60 > 45:  # the minute window must not roll over mid-test
        time.sleep(61 - time.time() % 60)
    statuses = []
    for n in range(24):
        response = httpx.post(
            f"{two_gateways[n % 2].url}/chat/completions", json=_body(FREE_MODEL, 4), headers=bundle.headers, timeout=30
        )
        statuses.append(response.status_code)
    assert statuses.count(200) == 20, statuses  # 20 a minute per account, not per process
    assert statuses[20:] == [429] * 4, statuses


def test_a_disabled_key_is_refused_by_both_processes_at_once(two_gateways):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="1")
    for server in two_gateways:  # both have the key in their in-process cache now
        response = httpx.post(f"{server.url}/chat/completions", json=_body(slug, 4), headers=bundle.headers, timeout=30)
        assert response.status_code == 200
    api_key_update(api_key=ApiKey.objects.get(id=bundle.key.id), disabled=True)
    deadline = time.monotonic() + 2.0  # the cache lifetime is 30 s: only the Redis invalidation explains a refusal
    refused: set[int] = set()
    while len(refused) < 2 and time.monotonic() < deadline:
        for index, server in enumerate(two_gateways):
            response = httpx.post(
                f"{server.url}/chat/completions", json=_body(slug, 4), headers=bundle.headers, timeout=30
            )
            if response.status_code == 401:
                refused.add(index)
        time.sleep(0.05)
    assert refused == {0, 1}


def test_a_declared_outage_reaches_both_processes_at_once(two_gateways):
    slug, endpoints = multi_provider_model()
    cheapest = endpoints[0]
    bundle = make_key(credits="1")
    for server in two_gateways:  # both hold a catalog snapshot with the cheapest endpoint in it
        response = httpx.post(f"{server.url}/chat/completions", json=_body(slug, 4), headers=bundle.headers, timeout=30)
        assert response.status_code == 200 and response.json()["provider"] == cheapest.provider.name
    catalog_outage_set(endpoint=cheapest, down=True)
    deadline = time.monotonic() + 2.0  # the snapshot lives 30 s: only the Redis invalidation explains a change
    moved: set[int] = set()
    while len(moved) < 2 and time.monotonic() < deadline:
        for index, server in enumerate(two_gateways):
            response = httpx.post(
                f"{server.url}/chat/completions", json=_body(slug, 4), headers=bundle.headers, timeout=30
            )
            assert response.status_code == 200, response.text
            if response.json()["provider"] != cheapest.provider.name:
                moved.add(index)
        time.sleep(0.05)
    assert moved == {0, 1}


def test_generations_from_both_processes_land_exactly_once(two_gateways):
    slug, _ = multi_provider_model()
    bundle = make_key(credits="1")

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            requests = []
            for n in range(30):
                body = _body(slug, 8)
                if n % 3 == 0:
                    body["stream"] = True
                requests.append(
                    client.post(f"{two_gateways[n % 2].url}/chat/completions", json=body, headers=bundle.headers)
                )
            return await asyncio.gather(*requests)

    responses = asyncio.run(send())
    assert [r.status_code for r in responses] == [200] * 30
    served = {r.headers["x-generation-id"] for r in responses}
    assert len(served) == 30
    time.sleep(1.5)  # each process writes its metrics every second; /metrics on either one sums both
    for server in two_gateways:
        text = httpx.get(
            server.url.removesuffix("/api/v1") + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        ).text
        line = 'http_requests_total{method="POST",route="/api/v1/chat/completions",status="200"}'
        assert float(text.split(line, 1)[1].split()[0]) == 32  # 30 here and one warm-up request to each
    for server in two_gateways:
        server.stop()  # a clean shutdown writes whatever each writer still holds
    ids = _generations_written(bundle.account.id, 30)
    assert sorted(ids) == sorted(served)
    charges = LedgerEntry.objects.filter(account_id=bundle.account.id, kind=LedgerEntry.Kind.USAGE)
    assert sorted(charges.values_list("reference", flat=True)) == sorted(served)
    assert ledger_drift() == []
