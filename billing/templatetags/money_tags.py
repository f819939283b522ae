"""Money in templates, through billing.money: ``{{ nanos|usd }}``, ``{{ nanos|usd_exact }}``, ``{{ cents|cents }}``."""

from django import template

from billing import money

register = template.Library()


@register.filter
def usd(nanos: int) -> str:
    """'$12.34', rounded toward zero."""
    return money.nanos_to_display(int(nanos or 0))


@register.filter
def usd_exact(nanos: int) -> str:
    """'12.345678901' (every nano-dollar)."""
    return money.nanos_to_usd_string(int(nanos or 0))


@register.filter
def cents(value: int) -> str:
    return "$" + money.cents_to_usd_string(int(value or 0))


@register.filter
def dollars(nanos: int) -> str:
    """'12.34' for a form field (whole cents, rounded toward zero)."""
    return money.cents_to_usd_string(money.nanos_to_cents_floor(int(nanos or 0)))


@register.filter
def usd_fine(nanos: int) -> str:
    """'$0.000123' for small per-request amounts (six places, toward zero); '$12.34' from a dollar up."""
    value = int(nanos or 0)
    return money.nanos_to_display(value, places=2 if abs(value) >= 10**9 else 6)


@register.filter
def usd_full(nanos: int) -> str:
    """'$20.0866645' every nano-dollar shown (at least two places), so totals on a page add up."""
    text = money.nanos_to_usd_string(int(nanos or 0)).rstrip("0")
    whole, _, part = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}${int(whole.lstrip('-') or 0):,}.{part.ljust(2, '0')}"
