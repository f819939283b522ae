"""A settlement that can never be written releases its hold (charge 0) and is kept as a dead letter."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model

from activity.models import Generation
from activity.records import GenerationRecord
from billing.counters import counters, limit_window
from billing.models import SettlementDeadLetter
from billing.selectors import ledger_drift, ledger_sum, settlement_dead_letters
from billing.settlement import settlement_flush, writer
from tests.factories import make_key
from tests.routing.test_chat_completions import chat, multi_provider_model

pytestmark = pytest.mark.django_db(transaction=True)

HELD = 7_654_321  # nano-dollars


def test_an_unwritable_settlement_releases_its_hold_and_is_kept_for_staff(gateway, client):
    bundle = make_key(credits="1", limit="0.5")  # a key limit: the hold is on the key's window too
    account = bundle.account
    window = limit_window(None)
    store = counters()
    hold = asyncio.run(
        store.hold(account_id=account.id, amount=HELD, key_hash=bundle.key.hash, key_limit=bundle.key.limit, window=window)
    )
    assert hold.ok and store.snapshot(account.id)["held"] == HELD
    record = GenerationRecord(
        id="gen-1-deadletterdeadlett01", account_id=account.id, api_key_id=bundle.key.id, key_hash=bundle.key.hash,
        key_window=window, created_at=dt.datetime.now(dt.UTC), held=HELD, cost=1_234,
        model="test/dead", tokens_prompt=2**70,  # out of range for any integer column: never writable
    )
    writer.submit(replace(record))

    # A request after it is still served and charged: the bad record does not block billing.
    slug, _ = multi_provider_model()
    response = chat(gateway, bundle, model=slug, max_tokens=5)
    assert response.status_code == 200
    assert settlement_flush(30)

    assert store.snapshot(account.id)["held"] == 0  # the dead letter's hold is released ...
    account.refresh_from_db()
    charged = Generation.objects.get(id=response.json()["id"]).cost
    assert account.balance == 10**9 - charged  # ... with a charge of 0
    assert ledger_sum(account_id=account.id) == account.balance and ledger_drift() == []
    assert not Generation.objects.filter(id=record.id).exists()
    # The key's window is released too: the whole limit but the served request is available again.
    assert asyncio.run(
        store.hold(
            account_id=account.id, amount=bundle.key.limit - charged, key_hash=bundle.key.hash,
            key_limit=bundle.key.limit, window=window,
        )
    ).ok

    letter = SettlementDeadLetter.objects.get(generation_id=record.id)
    assert (letter.account_id, letter.held, letter.cost) == (account.id, HELD, 1_234)
    assert "range" in letter.reason.lower() or "overflow" in letter.reason.lower() or "integer" in letter.reason.lower()
    assert letter.record["tokens_prompt"] == 2**70 and letter.record["model"] == "test/dead"
    assert settlement_dead_letters()[0] == letter
    assert settlement_dead_letters(account_id=account.id) == [letter]
    assert settlement_dead_letters(account_id=account.id + 1_000_000) == []

    # Staff see it in the admin.
    staff = get_user_model().objects.create_superuser(email="staff@example.com", username="staff", password="pw-123456")
    client.force_login(staff)
    page = client.get("/admin/billing/settlementdeadletter/")
    assert page.status_code == 200 and record.id in page.content.decode()
    detail = client.get(f"/admin/billing/settlementdeadletter/{letter.id}/change/")
    assert detail.status_code == 200 and letter.reason[:20] in detail.content.decode()
