"""Every movement of credits. Each function owns its transaction.

Balances change only here, always together with a ledger entry, with the account
row locked; ``Account.balance`` therefore always equals the sum of its entries.
Counters (billing.counters) are told after the commit.

One module a concern: ledger (grants, lot consumption, settling generations), holds,
cards (billing profile, Stripe customer, saved card), purchases, reconcile, refunds,
expiry, topup (auto top-up), webhook_events, dead_letters (settlements that could not be written),
adjustments (support staff). Every public name is importable from here.
"""

from .adjustments import credits_adjust
from .cards import billing_profile_ensure, card_setup_complete, card_setup_start, stripe_customer_ensure
from .closing import account_delete
from .dead_letters import settlement_dead_letter_record
from .expiry import lots_expire, lots_expiry_notify, lots_forfeit
from .ledger import (
    LOT_LIFETIME,
    REFUND_WINDOW,
    credits_grant,
    generations_settle,
    lots_consume,
    signup_allowance_grant,
)
from .purchases import (
    CardPayment,
    auto_topup_charge,
    card_purchase_start,
    crypto_purchase_start,
    purchase_fail,
    purchase_succeed,
)
from .reconcile import purchases_reconcile
from .refunds import purchase_refund, refund_reverse, refund_succeed
from .topup import (
    auto_topup_cancel,
    auto_topup_configure,
    auto_topup_maybe_trigger,
    auto_topup_pause,
    auto_topup_resume,
)
from .transfers import TransferError, credits_transfer
from .webhook_events import webhook_event_process, webhook_event_record

__all__ = [
    "LOT_LIFETIME",
    "TransferError",
    "credits_transfer",
    "REFUND_WINDOW",
    "CardPayment",
    "account_delete",
    "auto_topup_cancel",
    "auto_topup_charge",
    "auto_topup_configure",
    "auto_topup_maybe_trigger",
    "auto_topup_pause",
    "auto_topup_resume",
    "billing_profile_ensure",
    "card_purchase_start",
    "card_setup_complete",
    "card_setup_start",
    "credits_adjust",
    "credits_grant",
    "crypto_purchase_start",
    "generations_settle",
    "lots_consume",
    "lots_expire",
    "lots_expiry_notify",
    "lots_forfeit",
    "purchase_fail",
    "purchase_refund",
    "purchase_succeed",
    "purchases_reconcile",
    "refund_reverse",
    "refund_succeed",
    "settlement_dead_letter_record",
    "signup_allowance_grant",
    "stripe_customer_ensure",
    "webhook_event_process",
    "webhook_event_record",
]
