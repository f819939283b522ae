"""Staff console template helpers: ``{% form_token %}`` (the one-time token every action form carries)."""

import secrets

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def form_token() -> str:
    """A hidden ``idempotency_key``: a double click on the form acts once."""
    return format_html('<input type="hidden" name="idempotency_key" value="{}">', secrets.token_urlsafe(24))
