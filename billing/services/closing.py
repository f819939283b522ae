"""Deleting an account: keys revoked, auto top-up cancelled, remaining credits forfeited."""

from __future__ import annotations

from accounts.models import Account
from accounts.services import account_close

from .expiry import lots_forfeit
from .topup import auto_topup_cancel

FORFEIT_MEMO = "account deleted by its owner: remaining credits forfeited"


def account_delete(*, account: Account, user) -> int:
    """Close the account (accounts' part first, so no new request can start), then cancel auto
    top-up and forfeit what is left through the ledger. Each step is idempotent: a retry after a
    failure finishes the job. Returns the nano-dollars forfeited."""
    account_close(account=account, user=user)
    auto_topup_cancel(account=account, reason="account deleted")
    return lots_forfeit(account_id=account.id, reason=FORFEIT_MEMO)
