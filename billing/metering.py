"""The gateway's one door into billing: a request's meter, from its credit hold to its settlement.

Routing imports nothing else from billing but ``money``. One request:

- ``meter_open`` holds the worst case of the first attempt (``Bound``: what is actually sent,
  at that endpoint's prices, for every choice of ``n``); a refusal is the 402 in OpenRouter's
  words ("can only afford N").
- ``Meter.extend`` grows the hold before a later attempt whose worst case is larger; a refusal
  skips that attempt.
- ``Meter.charge`` prices what the provider reported at the endpoint's list price: zero-completion
  insurance, the BYOK fee, plugin fees. The charge is the real cost, never capped at the hold: a
  cost above its hold is charged in full (the balance may go below zero by that much, as on
  OpenRouter), logged, and counted (``overcharge_count``).
- ``Meter.close`` hands the generation record, with its money, to the settlement writer, which
  charges the ledger, stores the generation and releases the hold.

A key with ``include_byok_in_limit`` counts BYOK usage (the list price of what the user's own
provider key paid for) against its limit: its holds and spend then differ from the account's.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass

from activity.records import GenerationRecord
from openrouter_site.errors import Forbidden, PaymentRequired

from . import money
from .byok import BYOK_FEE_PERCENT, byok_fee, byok_request_count_incr
from .counters import BYOK_WINDOW_SUFFIX, BudgetHold, counters, limit_window, window_reset_at
from .pricing import Cost, Usage, usage_cost, worst_case_cost
from .settlement import settlement_flush, settlement_submit, writer

__all__ = [
    "Bound",
    "Charge",
    "Cost",
    "Meter",
    "Usage",
    "meter_open",
    "meters_flush",
    "overcharge_count",
]

logger = logging.getLogger("openrouter.metering")
NO_COST = Cost(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Bound:
    """The most one attempt can cost: the prompt as sent to the provider, and the output allowed."""

    endpoint: object  # prices: price_prompt, price_completion, price_request, price_cache_write
    prompt_tokens: int
    max_completion_tokens: int  # per choice
    choices: int = 1  # ``n``: every choice is billed as output
    is_byok: bool = False


@dataclass(frozen=True, slots=True)
class Charge:
    cost: Cost  # the list price of what the provider reported (the response's cost details)
    charged: int  # what the account pays for it
    is_byok: bool = False


class Meter:
    """One request's credit hold, its charge and its settlement."""

    __slots__ = (
        "generation_id", "account_id", "account_public_id", "key_hash", "key_limit", "window", "counts_byok",
        "training_discount", "plugin_cost", "site_url", "held", "key_held", "closed", "budgets", "budget_held",
    )

    def __init__(self, *, generation_id: str, key, plugin_cost: int, site_url: str) -> None:
        self.generation_id = generation_id
        self.account_id: int = key.account_id
        self.account_public_id: str = key.account_public_id
        self.key_hash: str = key.hash
        self.key_limit: int | None = key.limit
        self.counts_byok = bool(key.include_byok_in_limit) and key.limit is not None
        self.window: str | None = None
        if key.limit is not None:
            self.window = limit_window(key.limit_reset) + (BYOK_WINDOW_SUFFIX if self.counts_byok else "")
        self.training_discount: bool = key.training_discount
        self.plugin_cost = plugin_cost
        self.site_url = site_url
        self.held = 0
        self.key_held = 0
        self.closed = False
        # Guardrail budgets (the key's, its creator's as a member): (rule, window), each held independently.
        self.budgets = tuple(
            (rule, limit_window(rule.reset_interval) + (BYOK_WINDOW_SUFFIX if rule.include_byok else ""))
            for rule in getattr(key, "guardrails", ())
            if rule.limit is not None
        )
        self.budget_held = [0] * len(self.budgets)

    # --- holds ---------------------------------------------------------------------------------

    def worst_case(self, bound: Bound) -> tuple[int, int]:
        """(the account's, the key's) worst case for ``bound``, plugin fees included."""
        account, with_byok = self._worst_cases(bound)
        return account, with_byok if self.counts_byok else account

    def _worst_cases(self, bound: Bound) -> tuple[int, int]:
        """(the account's worst case, the same with BYOK usage counted at list price)."""
        list_price = worst_case_cost(
            bound.endpoint,
            prompt_tokens=bound.prompt_tokens,
            max_completion_tokens=bound.max_completion_tokens * max(bound.choices, 1),
        )
        if not bound.is_byok:
            return list_price + self.plugin_cost, list_price + self.plugin_cost
        fee = money.percent_of(list_price, BYOK_FEE_PERCENT) + 1  # rounded half up: one more covers it
        return fee + self.plugin_cost, fee + self.plugin_cost + list_price

    async def _hold(self, bound: Bound, *, first: bool = False):
        """Hold what ``bound`` needs beyond what is held, on the balance, the key's limit and every
        guardrail budget at once (the first hold always asks: a balance at or below zero, or a spent
        budget, refuses even a free request). None when nothing more was needed."""
        account, with_byok = self._worst_cases(bound)
        needed, key_needed = account, (with_byok if self.counts_byok else account)
        extra, key_extra = max(needed - self.held, 0), max(key_needed - self.key_held, 0)
        budget_extra = [
            max((with_byok if rule.include_byok else account) - held, 0)
            for (rule, _window), held in zip(self.budgets, self.budget_held, strict=True)
        ]
        if not first and not extra and not key_extra and not any(budget_extra):
            return None
        asked = [i for i, amount in enumerate(budget_extra) if first or amount]
        result = await counters().hold(
            account_id=self.account_id, amount=extra, key_hash=self.key_hash, key_limit=self.key_limit,
            window=self.window or "all", key_amount=key_extra,
            budgets=tuple(
                BudgetHold(
                    subject=self.budgets[i][0].subject, window=self.budgets[i][1],
                    limit=self.budgets[i][0].limit, amount=budget_extra[i],
                )
                for i in asked
            ),
        )
        if result.ok:
            self.held += extra
            self.key_held += key_extra
            for i in asked:
                self.budget_held[i] += budget_extra[i]
        elif result.reason == "budget":
            return dataclasses.replace(result, budget=asked[result.budget])
        return result

    def guardrail_blocked(self, result) -> Forbidden:
        """The 403 for a request a guardrail's budget cannot cover: which guardrail, and why."""
        rule, window = self.budgets[result.budget]
        limit_usd = money.nanos_to_price_string(rule.limit)
        used_usd = money.nanos_to_price_string(max(rule.limit - result.available, 0))
        period = {"daily": "daily", "weekly": "weekly", "monthly": "monthly"}.get(rule.reset_interval, "total")
        resets_at = window_reset_at(rule.reset_interval)
        whose = "this API key" if rule.subject.startswith("k:") else "this member"
        when = f"; it resets at {resets_at.isoformat().replace('+00:00', 'Z')}" if resets_at else ""
        return Forbidden(
            f"Guardrail '{rule.name}' blocked this request: the {period} budget of ${limit_usd} for {whose} "
            f"is exhausted (${used_usd} spent or held, and this request may cost more than what is left){when}",
            metadata={
                "guardrail_id": rule.id,
                "guardrail_name": rule.name,
                "reason": "budget_exceeded",
                "limit_usd": money.nanos_to_usd_number(rule.limit),
                "reset_interval": rule.reset_interval,
                "resets_at": resets_at.isoformat().replace("+00:00", "Z") if resets_at else None,
            },
        )

    async def extend(self, bound: Bound) -> bool:
        """Before a later attempt: make the hold cover its worst case. False: the credits do not."""
        result = await self._hold(bound)
        return result is None or result.ok

    def payment_required(self, bound: Bound, reason: str | None, available: int) -> PaymentRequired:
        """OpenRouter's 402 for a request whose worst case the balance (or the key's limit) cannot cover."""
        endpoint = bound.endpoint
        metadata = {"provider_name": None}
        if available <= 0 and reason == "balance":
            return PaymentRequired(
                f"Insufficient credits. This account never purchased credits or its balance is exhausted. "
                f"Add more using {self.site_url}/settings/credits",
                metadata=metadata,
                user_id=self.account_public_id,
            )
        prompt_cost = money.tokens_cost_ceiling(bound.prompt_tokens, endpoint.price_prompt) + endpoint.price_request
        if reason == "key_limit":
            where = f"{self.site_url}/settings/keys and create a key with a higher limit"
        else:
            where = f"{self.site_url}/settings/credits and add more credits"
        if prompt_cost + self.plugin_cost > available:
            affordable = money.affordable_tokens(max(available - endpoint.price_request, 0), endpoint.price_prompt)
            return PaymentRequired(
                f"Prompt tokens limit exceeded: {bound.prompt_tokens} > {affordable}. To increase, visit {where}",
                metadata=metadata,
                user_id=self.account_public_id,
            )
        choices = max(bound.choices, 1)
        affordable = money.affordable_tokens(available - prompt_cost - self.plugin_cost, endpoint.price_completion)
        affordable = min(affordable // choices, bound.max_completion_tokens)
        return PaymentRequired(
            f"This request requires more credits, or fewer max_tokens. You requested up to "
            f"{bound.max_completion_tokens} tokens, but can only afford {affordable}. To increase, visit {where}",
            metadata=metadata,
            user_id=self.account_public_id,
        )

    # --- the charge ----------------------------------------------------------------------------

    async def charge(self, bound: Bound, usage: Usage, finish: str | None, *, bill_errors: bool) -> Charge:
        """The real cost of ``usage`` at ``bound``'s endpoint. Nothing is charged for an answer with no
        output and no finish reason, nor for a provider error unless ``bill_errors`` (the client saw
        part of a stream); a BYOK request pays the BYOK fee instead of the cost."""
        cost = usage_cost(bound.endpoint, usage, training_discount=self.training_discount)
        insured = (usage.completion_tokens == 0 and not finish) or (finish == "error" and not bill_errors)
        charged = 0 if insured else cost.total
        if bound.is_byok and charged:
            count = await byok_request_count_incr(self.account_id)
            charged = byok_fee(list_price_cost_nanos=cost.total, requests_this_month=count)
        charged += self.plugin_cost
        if charged > self.held:
            _overcharged(self.generation_id, charged, self.held)
        return Charge(cost=cost, charged=charged, is_byok=bound.is_byok)

    # --- settlement ----------------------------------------------------------------------------

    def close(self, charge: Charge | None, **what_happened) -> None:
        """Hand the generation record (``what_happened``: the request's fields of ``GenerationRecord``)
        to the settlement writer with its money: what was held, and what is charged (nothing without a
        ``charge``: the request failed). The hold is released once it is written."""
        if self.closed:
            return
        self.closed = True
        cost = charge.cost if charge is not None else NO_COST
        is_byok = charge is not None and charge.is_byok
        settlement_submit(
            GenerationRecord(
                **what_happened,
                key_window=self.window,
                budget_holds=tuple(
                    (rule.subject, window, held)
                    for (rule, window), held in zip(self.budgets, self.budget_held, strict=True)
                ),
                held=self.held,
                key_held=self.key_held if self.key_held != self.held else None,
                cost=charge.charged if charge is not None else 0,
                cost_prompt=cost.prompt,
                cost_completion=cost.completion,
                upstream_cost=cost.total if is_byok else 0,
                is_byok=is_byok,
            )
        )


async def meter_open(*, generation_id: str, key, bound: Bound, plugin_cost: int = 0, site_url: str) -> Meter:
    """Open the request's meter: hold ``bound``'s worst case, or raise OpenRouter's 402.

    ``key`` is the caller's ``accounts.keycache.KeyInfo``; ``site_url`` is where the 402 sends
    the user to add credits."""
    meter = Meter(generation_id=generation_id, key=key, plugin_cost=plugin_cost, site_url=site_url)
    writer.ensure_started()  # its loop keeps this process's heartbeat alive while requests run
    result = await meter._hold(bound, first=True)
    if not result.ok:
        if result.reason == "budget":
            rule, window = meter.budgets[result.budget]
            try:
                await counters().budget_refusal_note(rule.subject, window, rule.limit)  # shown on the guardrails page
            except Exception:
                logger.warning("could not note a guardrail refusal", exc_info=True)
            raise meter.guardrail_blocked(result)
        raise meter.payment_required(bound, result.reason, result.available)
    return meter


def meters_flush(timeout: float = 10.0) -> bool:
    """Wait until every closed meter's record is written (shutdown)."""
    return settlement_flush(timeout)


# --- overcharges ---------------------------------------------------------------------------------

_overcharge_lock = threading.Lock()
_overcharges = 0


def _overcharged(generation_id: str, charged: int, held: int) -> None:
    global _overcharges
    with _overcharge_lock:
        _overcharges += 1
    logger.warning(
        "%s: cost %s exceeds its hold %s by %s nano-dollars; charged in full", generation_id, charged, held, charged - held
    )


def overcharge_count() -> int:
    """How many requests in this process cost more than their hold (each was charged in full): a metric."""
    return _overcharges
