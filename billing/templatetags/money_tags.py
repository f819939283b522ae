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
