"""The ``/auth`` consent page of OAuth PKCE: which app asks for a key, Authorize or Deny.

GET checks the app's parameters (a bad one is a page with the reason, status 400), sends a
signed-out user to sign in and back, and shows the request. The decision is a CSRF-protected
POST of the same parameters (checked again): Authorize creates a code and redirects to the
callback with ``code`` (and ``state``), or shows the code in headless mode; Deny redirects with
``error=access_denied``. The page's CSP lets its form redirect to the callback's origin only.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from billing.money import MoneyError, usd_input_to_nanos
from openrouter_site.security import content_security_policy

from . import oauth, selectors, services

MAX_LIMIT_USD = 1_000_000
PARAMS = ("callback_url", "code_challenge", "code_challenge_method", "key_label", "state")


@dataclass(frozen=True)
class AuthRequest:
    callback: oauth.Callback
    challenge: str
    method: str
    label: str
    state: str
    fields: dict  # the parameters as received, for the form's hidden inputs


class CallbackRedirect(HttpResponseRedirect):
    """A redirect to the app's callback, which may be a native app's custom scheme (checked before)."""

    def __init__(self, url: str) -> None:
        self.allowed_schemes = [urlsplit(url).scheme]
        super().__init__(url)


def _auth_request(params) -> AuthRequest:
    fields = {name: params.get(name, "") for name in PARAMS}
    if any("\x00" in value for value in fields.values()):
        raise oauth.OAuthInputError("The request contains a NUL character.")
    callback = oauth.callback_parse(fields["callback_url"])
    challenge, method = oauth.challenge_parse(
        fields["code_challenge"], fields["code_challenge_method"], required=callback.headless
    )
    return AuthRequest(
        callback=callback, challenge=challenge, method=method, label=oauth.label_parse(fields["key_label"]),
        state=oauth.state_parse(fields["state"]), fields=fields,
    )


def _limit(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        limit = usd_input_to_nanos(raw)
    except (MoneyError, ValueError, ArithmeticError):
        raise oauth.OAuthInputError("The credit limit must be an amount in USD, like 10 or 2.50.") from None
    if limit < 0:
        raise oauth.OAuthInputError("The credit limit must not be negative.")
    if limit > MAX_LIMIT_USD * 10**9:
        raise oauth.OAuthInputError(f"The credit limit must be at most ${MAX_LIMIT_USD:,}.")
    return limit


def _page(request: HttpRequest, context: dict, *, status: int = 200, callback: oauth.Callback | None = None):
    response = render(request, "accounts/oauth_authorize.html", context, status=status)
    if callback is not None and callback.csp_source:
        # The decision's redirect leaves for the app: browsers check it against this page's form-action.
        policy = content_security_policy().replace("form-action 'self'", f"form-action 'self' {callback.csp_source}")
        response["Content-Security-Policy"] = policy
    return response


@never_cache  # the headless page shows a live code
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    params = request.GET if request.method == "GET" else request.POST
    try:
        auth = _auth_request(params)
    except oauth.OAuthInputError as exc:
        return _page(request, {"error": exc.message}, status=400)
    if not request.user.is_authenticated:
        if request.method == "POST":
            return _page(request, {"error": "Your session ended: sign in and start again from the app."}, status=400)
        return redirect_to_login(request.get_full_path())
    context = {"auth": auth, "app_name": auth.callback.app_name}
    if request.method == "GET":
        return _page(request, context, callback=auth.callback)
    decision = request.POST.get("decision")
    if decision == "deny":
        if auth.callback.headless:
            return _page(request, {**context, "denied": True})
        url = oauth.callback_redirect_url(auth.callback.url, {"error": "access_denied", "state": auth.state})
        return CallbackRedirect(url)
    if decision != "authorize":
        return _page(request, {**context, "error": "Choose Authorize or Deny."}, status=400, callback=auth.callback)
    try:
        limit = _limit(request.POST.get("limit", ""))
    except oauth.OAuthInputError as exc:
        return _page(request, {**context, "error": exc.message, "limit": request.POST.get("limit", "")[:40]},
                     status=400, callback=auth.callback)
    account = selectors.account_for_user(user=request.user) or services.account_get_or_create_personal(user=request.user)
    _code, raw = oauth.oauth_code_create(
        account=account, user=request.user, callback=auth.callback, code_challenge=auth.challenge,
        code_challenge_method=auth.method, key_label=auth.label, key_limit=limit,
    )
    if auth.callback.headless:
        return _page(request, {**context, "code": raw})
    url = oauth.callback_redirect_url(auth.callback.url, {"code": raw, "state": auth.state})
    return CallbackRedirect(url)
