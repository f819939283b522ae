"""Run localstripe (a real, stateful local Stripe server) as a subprocess in tests.

Usage::

    with LocalStripeProcess() as ls:
        settings.STRIPE_API_BASE = ls.url
        ls.webhook_register(url=live_server.url + "/billing/webhooks/stripe", secret="whsec_...")
        seti = ...  # a SetupIntent created by the platform
        ls.confirm_card_setup(seti.client_secret, card=CARD_OK)  # what Stripe.js does in the page

localstripe has no "bind port 0" option, so a free port is picked first and the start is
retried on the (rare) collision. Its store is kept in memory only (scripts/localstripe_server.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.live_server import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Test cards localstripe knows (https://docs.stripe.com/testing): these numbers behave the same on Stripe.
CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"  # attaches fine, every charge is declined
CARD_DECLINED_ON_SAVE = "4000000000000002"
CARD_NEEDS_3DS = "4000002500003155"


class LocalStripeError(RuntimeError):
    pass


class LocalStripeProcess:
    def __init__(self, *, startup_timeout: float = 20.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log", delete=False)  # noqa: SIM115
        self.client = httpx.Client(timeout=10)

    def __enter__(self) -> LocalStripeProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.port is None:
            raise LocalStripeError("localstripe is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalStripeProcess:
        for _attempt in range(3):
            self.port = free_port()
            command = [sys.executable, "scripts/localstripe_server.py", "--port", str(self.port)]
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=self._log, stderr=self._log)
            if self._wait_until_up():
                return self
            self.stop(keep_log=True)
        raise LocalStripeError(f"localstripe did not start:\n{self.log_text()}")

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if self.client.get(f"{self.url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def stop(self, keep_log: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if not keep_log:
            self.client.close()
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)

    def log_text(self) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # --- what the browser and Stripe's dashboard would do ---------------------------------------------

    def webhook_register(self, *, url: str, secret: str, events: list[str] | None = None, webhook_id: str = "tests") -> None:
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        response = self.client.post(f"{self.url}/_config/webhooks/{webhook_id}", json=body)
        response.raise_for_status()

    def confirm_card_setup(self, client_secret: str, *, card: str = CARD_OK) -> dict[str, Any]:
        """Stripe.js ``confirmCardSetup`` with a card element filled in (what localstripe's JS sends)."""
        setup_intent_id = client_secret.split("_secret_")[0]
        body = {
            "key": "pk_test_localstripe",
            "use_stripe_sdk": True,
            "client_secret": client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": card, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            },
        }
        response = self.client.post(f"{self.url}/v1/setup_intents/{setup_intent_id}/confirm", content=json.dumps(body))
        return {"status_code": response.status_code, **response.json()}

    def authenticate_payment(self, client_secret: str, *, success: bool = True) -> dict[str, Any]:
        """Stripe.js ``confirmCardPayment`` for a payment that needs 3-D Secure."""
        payment_intent_id = client_secret.split("_secret_")[0]
        response = self.client.post(
            f"{self.url}/v1/payment_intents/{payment_intent_id}/_authenticate?success={'true' if success else 'false'}",
            content=json.dumps({"key": "pk_test_localstripe", "client_secret": client_secret}),
        )
        return {"status_code": response.status_code, **response.json()}

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(f"{self.url}{path}", params=params, auth=("sk_test_localstripe", ""))
        response.raise_for_status()
        return response.json()

    def payment_intents(self, *, customer: str | None = None) -> list[dict[str, Any]]:
        items = self._get("/v1/payment_intents", limit=100_000)["data"]
        return [pi for pi in items if customer is None or pi.get("customer") == customer]

    def refunds(self, *, payment_intent: str) -> list[dict[str, Any]]:
        return self._get("/v1/refunds", payment_intent=payment_intent)["data"]

    def events(self, *, type: str | None = None) -> list[dict[str, Any]]:
        params = {"limit": 100_000} | ({"type": type} if type else {})
        return self._get("/v1/events", **params)["data"]
