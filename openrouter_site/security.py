"""The Content-Security-Policy header of every Django response.

``settings.CONTENT_SECURITY_POLICY`` (a dict of directive -> sources) is the policy; Stripe.js's
origin is added at request time because it follows the Stripe settings (real Stripe, or
localstripe's stand-in whose address tests move). A response that already carries a
Content-Security-Policy keeps its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware

from billing import stripe_client

HEADER = "Content-Security-Policy"
# What Stripe.js needs when it is Stripe's own (https://docs.stripe.com/security/guide#content-security-policy).
REAL_STRIPE_SOURCES = {
    "script-src": ["https://js.stripe.com", "https://*.js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def stripe_sources() -> dict[str, list[str]]:
    js_origin = origin(stripe_client.js_url())
    if js_origin == "https://js.stripe.com":
        return REAL_STRIPE_SOURCES
    # localstripe (or another stand-in): its script, its card frames and its API share one origin.
    sources = [s for s in {js_origin, origin(settings.STRIPE_API_BASE)} if s]
    return {"script-src": sorted(sources), "frame-src": sorted(sources), "connect-src": sorted(sources)}


def content_security_policy() -> str:
    directives = {name: list(sources) for name, sources in settings.CONTENT_SECURITY_POLICY.items()}
    for name, sources in stripe_sources().items():
        present = directives.setdefault(name, ["'self'"])
        present.extend(s for s in sources if s not in present)
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


@sync_and_async_middleware
def content_security_policy_middleware(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            response = await get_response(request)
            if HEADER not in response:
                response[HEADER] = content_security_policy()
            return response

        return middleware

    def middleware(request):
        response = get_response(request)
        if HEADER not in response:
            response[HEADER] = content_security_policy()
        return response

    return middleware
