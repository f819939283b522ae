"""GET /credits is exact, and ``manage.py check_ledger`` notices a balance that left its ledger."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from accounts.models import Account
from activity.models import Generation
from billing.models import LedgerEntry
from billing.money import NANOS_PER_USD, nanos_to_usd_number, usd_to_nanos
from billing.selectors import ledger_sum
from billing.services import credits_grant
from billing.settlement import settlement_flush
from tests.factories import make_account, make_key
from tests.openapi import validate_response
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)


def credits(server, bundle) -> dict:
    response = httpx.get(f"{server.api}/credits", headers=bundle.headers, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/credits", "get", 200, body)
    assert set(body["data"]) == {"total_credits", "total_usage"}
    return body["data"]


def usd(number: float) -> Decimal:
    """A JSON number of USD as an exact decimal (the API renders whole nano-dollars)."""
    return Decimal(repr(number))


def test_fresh_account_shows_its_grant_and_no_usage(gateway):
    manager = make_key(credits="10", management=True)
    assert credits(gateway, manager) == {"total_credits": 10, "total_usage": 0}


def test_account_without_credits_shows_zeros(gateway):
    manager = make_key(account=make_account(credits="0"), management=True)
    assert credits(gateway, manager) == {"total_credits": 0, "total_usage": 0}


def test_totals_are_exact_after_grants_and_usage(gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="10")
    credits_grant(account=account, amount=usd_to_nanos("2.25"), idempotency_key="buy-1", kind=LedgerEntry.Kind.PURCHASE)
    # A retried grant with the same idempotency key is counted once.
    credits_grant(account=account, amount=usd_to_nanos("2.25"), idempotency_key="buy-1", kind=LedgerEntry.Kind.PURCHASE)
    credits_grant(account=account, amount=usd_to_nanos("0.000000001"), idempotency_key="one-nano")
    manager = make_key(account=account, management=True)
    worker = make_key(account=account)

    costs = []
    for max_tokens in (5, 9, 13):
        response = chat(gateway, worker, model=slug, max_tokens=max_tokens)
        assert response.status_code == 200, response.text
        costs.append(usd(response.json()["usage"]["cost"]))
    settlement_flush()

    data = credits(gateway, manager)
    account.refresh_from_db()
    granted = usd_to_nanos("12.25") + 1
    used = sum(Generation.objects.filter(account=account).values_list("cost", flat=True))
    assert used > 0
    assert usd(data["total_credits"]) == Decimal(granted) / NANOS_PER_USD
    assert usd(data["total_usage"]) == Decimal(used) / NANOS_PER_USD == sum(costs)
    assert data["total_credits"] == nanos_to_usd_number(account.total_credits)
    assert data["total_usage"] == nanos_to_usd_number(account.total_usage)
    balance = usd(data["total_credits"]) - usd(data["total_usage"])
    assert balance == Decimal(account.balance) / NANOS_PER_USD
    assert account.balance == ledger_sum(account_id=account.id) == granted - used


def test_refused_request_changes_nothing(gateway):
    slug, _ = multi_provider_model()
    account = make_account(credits="0.000001")
    manager = make_key(account=account, management=True)
    worker = make_key(account=account)
    before = credits(gateway, manager)
    response = chat(gateway, worker, model=slug, max_tokens=4000)
    assert response.status_code == 402, response.text
    settlement_flush()
    assert credits(gateway, manager) == before


def test_check_ledger_passes_on_a_consistent_ledger(gateway):
    slug, _ = multi_provider_model()
    worker = make_key(credits="5")
    make_key(credits="0")
    assert chat(gateway, worker, model=slug, max_tokens=6).status_code == 200
    settlement_flush()
    out = StringIO()
    call_command("check_ledger", stdout=out, stderr=StringIO())
    assert "ledger ok" in out.getvalue()


def test_check_ledger_fails_when_a_balance_drifts(gateway):
    healthy = make_account(credits="5")
    corrupt = make_account(credits="5")
    # Keep the row's own constraint (balance = total_credits - total_usage) but leave the ledger behind.
    Account.objects.filter(id=corrupt.id).update(balance=F("balance") + 7, total_credits=F("total_credits") + 7)
    err = StringIO()
    with pytest.raises(CommandError, match="1 account"):
        call_command("check_ledger", stdout=StringIO(), stderr=err)
    assert f"account {corrupt.id}:" in err.getvalue()
    assert f"account {healthy.id}:" not in err.getvalue()
    # Put it back: the check passes again.
    Account.objects.filter(id=corrupt.id).update(balance=F("balance") - 7, total_credits=F("total_credits") - 7)
    call_command("check_ledger", stdout=StringIO(), stderr=StringIO())
