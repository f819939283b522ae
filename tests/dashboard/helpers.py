"""Shared setup for the dashboard tests: users who can sign in, and generations settled through the real path."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets

from accounts.selectors import account_for_user
from activity.records import GenerationRecord
from billing.services import generations_settle
from tests.factories import make_account, make_key

PASSWORD = "a-long-passphrase-for-tests"
_ids = itertools.count(1)


def signed_in_user(client, *, credits: str = "10"):
    """A user with a password, a personal account with credits, signed in on ``client``."""
    account = make_account(credits=credits)
    user = account.owner
    user.set_password(PASSWORD)
    user.save()
    client.force_login(user)
    assert account_for_user(user=user).id == account.id
    return user, account


def settle(*, account, api_key=None, when: dt.datetime | None = None, model: str = "openai/gpt-4o-mini",
           provider: str = "OpenAI", cost: int = 1234, tokens_prompt: int = 10, tokens_completion: int = 5,
           finish_reason: str = "stop", endpoint_id: int | None = 1, is_byok: bool = False, upstream_cost: int = 0,
           cancelled: bool = False) -> str:
    """One generation charged through billing's settlement service (the roll-ups are updated there)."""
    when = when or dt.datetime.now(dt.UTC)
    gen_id = f"gen-{int(when.timestamp())}-{secrets.token_hex(8)}{next(_ids):04d}"
    record = GenerationRecord(
        id=gen_id, account_id=account.id, api_key_id=api_key.id if api_key else None,
        key_hash=api_key.hash if api_key else "", key_window=None, created_at=when, held=cost, cost=cost,
        model=model, requested_model=model, provider_name=provider, provider_slug=provider.lower(),
        endpoint_id=endpoint_id, tokens_prompt=tokens_prompt, tokens_completion=tokens_completion,
        finish_reason=finish_reason, is_byok=is_byok, upstream_cost=upstream_cost, cancelled=cancelled,
        latency_ms=200, generation_time_ms=500,
    )
    assert generations_settle(records=[record]) == 1
    return gen_id


__all__ = ["PASSWORD", "make_key", "settle", "signed_in_user"]
