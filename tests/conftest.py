"""Shared fixtures: the provider simulator, a live server, the shipped catalog, clean counters."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def simulator():
    from tests.simulator_process import SimulatorProcess

    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture(scope="session")
def live_server_url(simulator, django_db_setup, django_db_blocker):
    """A real ASGI server (uvicorn) in a thread, routing the catalog's providers to the simulator."""
    from django.conf import settings

    settings.PROVIDER_SIMULATOR_URL = simulator.url
    from openrouter_site.asgi import application
    from tests.live_server import LiveServer

    server = LiveServer(application).start()
    yield server
    server.stop()
    _drop_other_connections(django_db_blocker)


def _drop_other_connections(django_db_blocker) -> None:
    """Worker threads of the live server keep PostgreSQL sessions; end them so the test DB can be dropped."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test file; fails (in CI) or skips without it."""
    from tests.browser import CHROMIUM, LAUNCH_ARGS, REQUIRED

    if CHROMIUM is None:
        message = "no chromium binary on PATH (apt-get install chromium); the browser tests need it"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    from playwright import sync_api

    # Playwright's sync API marks its event loop as running in this thread between calls, and Django refuses
    # ORM calls under a running loop: allow them while the browser is up (the tests' own DB checks and the
    # per-test flush). The variable is process-wide, so the live server's thread is not checked either
    # meanwhile; the pages are sync Django views, which Django runs in threads anyway.
    with pytest.MonkeyPatch.context() as patch, sync_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def catalog(transactional_db):
    """The shipped catalog, loaded through load_catalog."""
    from django.core.management import call_command

    call_command("load_catalog", verbosity=0)
    from routing import catalog_cache

    catalog_cache.invalidate()
    yield
    # Generations still queued must be written before the database is emptied.
    from billing.settlement import settlement_flush

    assert settlement_flush(15), "the settlement writer did not drain"


@pytest.fixture(autouse=True)
def _clean_gateway_state():
    """Caches and counters are per process: start every test from nothing, and write what is queued."""
    from accounts import keycache
    from billing.counters import counters
    from routing import catalog_cache
    from routing.stats import stats_reset

    keycache.clear()
    catalog_cache.invalidate()
    counters().reset()
    _reset_routing_state()
    stats_reset()
    yield


@pytest.fixture
def gateway(live_server_url, catalog, simulator):
    """Everything a gateway test needs: live server, catalog, simulator reset to healthy."""
    simulator.reset()
    return live_server_url


@pytest.fixture(scope="session")
def localstripe():
    """The local Stripe server (localstripe) as a subprocess; the platform's Stripe calls go to it."""
    from django.conf import settings

    from tests.localstripe_process import LocalStripeProcess

    saved = (settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY)
    with LocalStripeProcess() as server:
        settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY = server.url, ""
        yield server
    settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY = saved


@pytest.fixture(scope="session")
def stripe_webhooks(localstripe, live_server_url):
    """localstripe signs its payment events and POSTs them to the live server's webhook endpoint."""
    from django.conf import settings

    from billing.stripe_client import WEBHOOK_EVENTS

    localstripe.webhook_register(
        url=f"{live_server_url.url}/billing/webhooks/stripe", secret=settings.STRIPE_WEBHOOK_SECRET, events=WEBHOOK_EVENTS
    )
    return localstripe


@pytest.fixture
def celery_eager():
    """Celery tasks run in the process that queues them (``.delay`` runs the task at once)."""
    from openrouter_site.celery import app

    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def _reset_routing_state() -> None:
    """Per-process routing state (rate limits, stickiness, BYOK caches) starts empty in every test."""
    from accounts import byok_cache
    from billing.byok import byok_request_counts_reset
    from routing.ratelimits import rate_limits
    from routing.sticky import sticky_reset

    rate_limits().reset()
    sticky_reset()
    byok_cache.clear()
    byok_request_counts_reset()
