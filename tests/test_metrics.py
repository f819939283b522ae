"""``/metrics``: Prometheus text for staff and a scraper's token, counts from real requests."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.factories import make_account, make_key
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(gateway, token: str) -> str:
    response = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_are_hidden_from_everyone_but_staff_and_the_scraper(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    user = make_account().owner
    client.force_login(user)
    assert client.get("/metrics").status_code == 404
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert client.get("/metrics").status_code == 200
    client.logout()
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    assert b"# TYPE http_requests_total counter" in response.content


def test_requests_refusals_upstream_and_overhead_are_counted(gateway, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    slug, endpoints = multi_provider_model()
    route = "/api/v1/chat/completions"
    before = scrape(gateway, "scrape-secret")
    provider = endpoints[0].provider.slug

    assert chat(gateway, make_key(credits="1"), model=slug, max_tokens=5).status_code == 200
    assert chat(gateway, make_key(credits="0"), model=slug, max_tokens=5).status_code == 402
    after = scrape(gateway, "scrape-secret")

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("http_requests_total", route=route, method="POST", status="200") == 1
    assert grew("http_requests_total", route=route, method="POST", status="402") == 1
    assert grew("gateway_refusals_total", status="402") == 1
    assert grew("http_request_duration_seconds_count", route=route) == 2
    assert grew("upstream_attempts_total", provider=provider, status="200") == 1
    assert grew("upstream_latency_seconds_count", provider=provider) == 1
    assert grew("gateway_overhead_seconds_count") == 1
    assert 0 < grew("gateway_overhead_seconds_sum") < 5
    # other routes are labelled by their URL pattern, not by the raw path
    assert httpx.get(f"{gateway.api}/models/{slug}/endpoints", timeout=10).status_code == 200
    routes = set(re.findall(r'http_requests_total\{[^}]*route="([^"]*)"', scrape(gateway, "scrape-secret")))
    assert not any(slug in r for r in routes), routes
    assert any(r.startswith("/api/v1/models/") and r.endswith("endpoints/?$") for r in routes), routes
    for gauge in ("settlement_queue_depth", "settlement_dead_letters", "credit_holds_in_flight"):
        assert f"# TYPE {gauge} gauge" in after


def test_dead_letters_and_overcharges_are_exported(gateway, settings):
    """The dead-letter gauge counts the durable table (not a per-process list); overcharges are a counter."""
    from billing.models import SettlementDeadLetter

    settings.METRICS_TOKEN = "scrape-secret"
    before = scrape(gateway, "scrape-secret")
    assert "# TYPE gateway_overcharges_total counter" in before
    assert sample(before, "settlement_dead_letters") == SettlementDeadLetter.objects.count()
    account = make_account()
    SettlementDeadLetter.objects.create(
        generation_id="gen-metrics-dead-letter", account_id=account.id, held=7, cost=5, reason="test"
    )
    after = scrape(gateway, "scrape-secret")
    assert sample(after, "settlement_dead_letters") - sample(before, "settlement_dead_letters") == 1
