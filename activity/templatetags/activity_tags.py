"""``{% metric name value %}``: a card's figure as money (spend, nano-dollars) or a count."""

from django import template

from billing import money

register = template.Library()


@register.simple_tag
def metric(name: str, value) -> str:
    value = round(value or 0)
    if name == "spend":
        places = 2 if abs(value) >= 10**9 else 4 if abs(value) >= 10**7 else 6
        return money.nanos_to_display(value, places=places)
    if value >= 10_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1_000:.1f}K"
    return f"{value:,}"
