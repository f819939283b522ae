"""The only module that converts or rounds money.

Every amount in the platform is an ``int`` of nano-dollars (1 USD = 10**9).
Prices are kept as nano-dollars per *million* tokens, so any per-million list
price with up to 15 decimals of a dollar per token is exact; a token count times
that price, divided by a million, is rounded once, half up, to a whole
nano-dollar. Floats never touch money; they appear only at the edge, when an
amount is rendered as a JSON number for the API.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

NANOS_PER_USD = 10**9
TOKENS_PER_MILLION = 10**6


class MoneyError(ValueError):
    pass


def usd_to_nanos(value: str | int | Decimal) -> int:
    """'12.5' -> 12_500_000_000. Refuses floats and anything finer than a nano-dollar."""
    if isinstance(value, float):
        raise MoneyError("money must not be a float")
    amount = _bounded_decimal(value if isinstance(value, Decimal) else str(value))
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise MoneyError(f"{value!r} is finer than a nano-dollar")
    return int(nanos)


# No amount anyone types or sends is near this; anything beyond it ("1e999999") is refused before
# any arithmetic, so no input can overflow a Decimal context or a 64-bit column.
MAX_INPUT_USD = Decimal(10**12)
MAX_INPUT_CHARS = 64


def _bounded_decimal(value: object) -> Decimal:
    """The one parser of untrusted amounts: a finite Decimal within +-MAX_INPUT_USD, else MoneyError.

    Refuses ``NaN``, ``sNaN``, ``Infinity``, ``1e999999`` (and its negative), text longer than
    ``MAX_INPUT_CHARS``, and anything ``Decimal`` cannot read; never raises anything else.
    """
    if isinstance(value, str) and len(value) > MAX_INPUT_CHARS:
        raise MoneyError("amount must be a number")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise MoneyError("amount must be a number") from exc
    if not amount.is_finite():
        raise MoneyError("amount must be a finite number")
    if amount.copy_abs() > MAX_INPUT_USD:
        raise MoneyError("amount is out of range")
    if amount.is_zero():
        return Decimal(0)
    if amount.adjusted() < -30:  # "1e-999999": finer than anything we keep; 0 after rounding anyway
        raise MoneyError("amount is finer than anything we keep")
    return amount


def _input_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MoneyError("amount must be a number")
    if isinstance(value, int) and abs(value) > MAX_INPUT_USD:
        raise MoneyError("amount is out of range")
    return _bounded_decimal(repr(value) if isinstance(value, float) else str(value))


def usd_input_to_nanos(value: object) -> int:
    """An amount from a JSON body (number or string), rounded down to a nano-dollar."""
    return int((_input_decimal(value) * NANOS_PER_USD).to_integral_value(rounding=ROUND_DOWN))


def usd_input_to_cents(value: object) -> int:
    """A payment amount (number or string) in whole cents; anything finer is refused, never rounded."""
    cents = _input_decimal(value) * 100
    if cents != cents.to_integral_value():
        raise MoneyError("amount is finer than a cent")
    return int(cents)


def price_per_token_to_per_million_nanos(value: str | int | Decimal) -> int:
    """A per-token USD price string ('0.0000025') -> nano-dollars per million tokens (2_500_000)."""
    if isinstance(value, float):
        raise MoneyError("price must not be a float")
    amount = _bounded_decimal(value if isinstance(value, Decimal) else str(value)) * NANOS_PER_USD * TOKENS_PER_MILLION
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


# --- Cents: card and crypto payments move whole cents -----------------------------------------

NANOS_PER_CENT = 10**7


def cents_to_nanos(cents: int) -> int:
    return cents * NANOS_PER_CENT


def nanos_to_cents_floor(nanos: int) -> int:
    """Whole cents in ``nanos``, rounded down (toward zero): what a refund may pay back."""
    if nanos < 0:
        return -((-nanos) // NANOS_PER_CENT)
    return nanos // NANOS_PER_CENT


def nanos_are_whole_cents(nanos: int) -> bool:
    return nanos % NANOS_PER_CENT == 0


def percent_of_cents(cents: int, percent: Decimal) -> int:
    """``percent``% of ``cents``, rounded half up to a whole cent (fees)."""
    value = Decimal(cents) * percent / Decimal(100)
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def cents_to_usd_string(cents: int) -> str:
    """1055 -> '10.55'."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def cents_to_display(cents: int) -> str:
    """1000000 -> '$10,000.00'."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


def nanos_to_display(nanos: int, places: int = 2) -> str:
    """'$12.34' for people: rounded toward zero, so a balance is never shown higher than it is."""
    value = (Decimal(nanos) / NANOS_PER_USD).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def percent_of(nanos: int, percent: Decimal) -> int:
    """``percent``% of ``nanos``, rounded half up to a nano-dollar (fees: 5% of 10 nanos is 1, of 9 is 0)."""
    share = Decimal(nanos) * percent / Decimal(100)
    return int(share.to_integral_value(rounding=ROUND_HALF_UP))
