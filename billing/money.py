"""The only module that converts or rounds money.

Every amount in the platform is an ``int`` of nano-dollars (1 USD = 10**9).
Prices are kept as nano-dollars per *million* tokens, so any per-million list
price with up to 15 decimals of a dollar per token is exact; a token count times
that price, divided by a million, is rounded once, half up, to a whole
nano-dollar. Floats never touch money; they appear only at the edge, when an
amount is rendered as a JSON number for the API.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

NANOS_PER_USD = 10**9
TOKENS_PER_MILLION = 10**6


class MoneyError(ValueError):
    pass


def usd_to_nanos(value: str | int | Decimal) -> int:
    """'12.5' -> 12_500_000_000. Refuses floats and anything finer than a nano-dollar."""
    if isinstance(value, float):
        raise MoneyError("money must not be a float")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise MoneyError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise MoneyError(f"{value!r} is finer than a nano-dollar")
    return int(nanos)


def usd_input_to_nanos(value: object) -> int:
    """An amount from a JSON body (number or string), rounded down to a nano-dollar."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MoneyError("amount must be a number")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation as exc:
        raise MoneyError("amount must be a number") from exc
    if not amount.is_finite():
        raise MoneyError("amount must be a finite number")
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_DOWN))


def price_per_token_to_per_million_nanos(value: str | int | Decimal) -> int:
    """A per-token USD price string ('0.0000025') -> nano-dollars per million tokens (2_500_000)."""
    if isinstance(value, float):
        raise MoneyError("price must not be a float")
    amount = Decimal(str(value)) * NANOS_PER_USD * TOKENS_PER_MILLION
    if amount != amount.to_integral_value():
        raise MoneyError(f"price {value!r} is finer than 1e-15 USD per token")
    return int(amount)


def per_million_nanos_to_price_string(per_million_nanos: int) -> str:
    """Inverse of the above, rendered as OpenRouter does: a plain decimal string, '0' for free."""
    if per_million_nanos == 0:
        return "0"
    value = Decimal(per_million_nanos) / (NANOS_PER_USD * TOKENS_PER_MILLION)
    text = format(value.normalize(), "f")
    return text


def nanos_to_price_string(nanos: int) -> str:
    """A per-request or per-image price (nano-dollars) as OpenRouter renders prices: '0.005', '0'."""
    if nanos == 0:
        return "0"
    return format((Decimal(nanos) / NANOS_PER_USD).normalize(), "f")


def nanos_to_usd_string(nanos: int) -> str:
    value = Decimal(nanos) / NANOS_PER_USD
    return format(value.quantize(Decimal("0.000000001")), "f")


def nanos_to_usd_number(nanos: int) -> float:
    """For JSON output only: the closest float to the exact amount."""
    return float(Decimal(nanos) / NANOS_PER_USD)


def tokens_cost(tokens: int, per_million_nanos: int) -> int:
    """Cost of ``tokens`` at a per-million price, in nano-dollars, rounded half up once."""
    if tokens <= 0 or per_million_nanos <= 0:
        return 0
    quotient, remainder = divmod(tokens * per_million_nanos, TOKENS_PER_MILLION)
    return quotient + (1 if remainder * 2 >= TOKENS_PER_MILLION else 0)


def tokens_cost_ceiling(tokens: int, per_million_nanos: int) -> int:
    """Upper bound used for holds: rounded up so a hold is never below the real charge."""
    if tokens <= 0 or per_million_nanos <= 0:
        return 0
    return -(-(tokens * per_million_nanos) // TOKENS_PER_MILLION)


def apply_discount(nanos: int, percent: Decimal) -> int:
    """``nanos`` less ``percent``%, rounded half up to a nano-dollar."""
    kept = Decimal(nanos) * (Decimal(100) - percent) / Decimal(100)
    return int(kept.to_integral_value(rounding=ROUND_HALF_UP))


def affordable_tokens(available_nanos: int, per_million_nanos: int) -> int:
    """How many tokens ``available_nanos`` pays for at a per-million price."""
    if per_million_nanos <= 0:
        return 2**31
    if available_nanos <= 0:
        return 0
    return (available_nanos * TOKENS_PER_MILLION) // per_million_nanos
