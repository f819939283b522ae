"""What a purchase costs: credits, the processor fee on top, and the total charged, in cents.

Card purchases (Stripe) pay 5.5% with a $0.80 minimum; crypto (USDC) pays 5%. The fee is
shown before paying, charged on top of the credits and never refunded. Amounts typed by
people are parsed here (whole cents, within the configured minimum and maximum).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from . import money
from .errors import PurchaseInvalid
from .models import Purchase

CARD_FEE_PERCENT = Decimal("5.5")
CARD_FEE_MIN_CENTS = 80
CRYPTO_FEE_PERCENT = Decimal("5")


@dataclass(frozen=True, slots=True)
class Quote:
    method: str
    credits_cents: int
    fee_cents: int

    @property
    def total_cents(self) -> int:
        return self.credits_cents + self.fee_cents

    @property
    def credits(self) -> int:
        """Nano-dollars of credits bought."""
        return money.cents_to_nanos(self.credits_cents)

    @property
    def fee(self) -> int:
        return money.cents_to_nanos(self.fee_cents)

    def as_dict(self) -> dict[str, str]:
        return {
            "method": self.method,
            "credits": money.cents_to_usd_string(self.credits_cents),
            "fee": money.cents_to_usd_string(self.fee_cents),
            "total": money.cents_to_usd_string(self.total_cents),
        }


def fee_cents(*, method: str, credits_cents: int) -> int:
    if method == Purchase.Method.CARD:
        return max(money.percent_of_cents(credits_cents, CARD_FEE_PERCENT), CARD_FEE_MIN_CENTS)
    if method == Purchase.Method.CRYPTO:
        return money.percent_of_cents(credits_cents, CRYPTO_FEE_PERCENT)
    raise PurchaseInvalid(f"Unknown payment method {method!r}")


def purchase_limits_cents() -> tuple[int, int]:
    low = money.nanos_to_cents_floor(money.usd_to_nanos(settings.BILLING_MIN_PURCHASE_USD))
    high = money.nanos_to_cents_floor(money.usd_to_nanos(settings.BILLING_MAX_PURCHASE_USD))
    return low, high


def amount_parse_cents(value: object, *, what: str = "amount") -> int:
    """A dollar amount typed by a person ('25', '$25.50', 25.5) -> whole cents; clear errors otherwise."""
    if isinstance(value, str):
        value = value.strip().removeprefix("$").replace(",", "").strip()
        if not value:
            raise PurchaseInvalid(f"Enter an {what} in US dollars, e.g. 10 or 25.50")
    try:
        money.usd_input_to_nanos(value)
    except money.MoneyError:
        raise PurchaseInvalid(f"The {what} must be a number of US dollars, e.g. 10 or 25.50") from None
    try:
        return money.usd_input_to_cents(value)
    except money.MoneyError:
        raise PurchaseInvalid(f"The {what} must be in whole cents, e.g. 10 or 25.50") from None


def purchase_amount_check(credits_cents: int) -> None:
    low, high = purchase_limits_cents()
    if credits_cents < low:
        raise PurchaseInvalid(f"The minimum purchase is {money.cents_to_display(low)}")
    if credits_cents > high:
        raise PurchaseInvalid(f"The maximum purchase is {money.cents_to_display(high)}")


def quote(*, method: str, credits_cents: int) -> Quote:
    return Quote(method=method, credits_cents=credits_cents, fee_cents=fee_cents(method=method, credits_cents=credits_cents))


def purchase_quote(*, method: str, amount: object) -> Quote:
    """Parse and check an amount of credits to buy; its fee and total."""
    credits_cents = amount_parse_cents(amount)
    purchase_amount_check(credits_cents)
    return quote(method=method, credits_cents=credits_cents)


def default_quote(*, method: str = Purchase.Method.CARD) -> Quote:
    """What the buy form starts with: $10 (OpenRouter's default), or the minimum if higher."""
    low, _high = purchase_limits_cents()
    return quote(method=method, credits_cents=max(1000, low))
