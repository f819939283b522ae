"""OAuth PKCE: how a third-party app gets an API key for a user without copy-paste.

The app sends the user to ``/auth?callback_url=…&code_challenge=…``; the user authorizes
(``oauth_code_create``) and is sent back with ``?code=…``; the app exchanges the code and its
verifier for a key (``oauth_code_exchange``, ``POST /api/v1/auth/keys``). An app holding a key
can also create a code server-side (``POST /api/v1/auth/keys/code``).

Rules (RFC 7636 and OpenRouter's docs): a code is stored as its SHA-256 only, works once and
for ten minutes; S256 is ``base64url(sha256(verifier))`` without padding; a challenge is
optional when there is a callback (Cline sends none) and required without one (headless mode,
where the user copies the code). Callbacks are https, loopback http on any port, or a native
app's custom scheme; never ``javascript:``, ``data:``, ``file:`` or plain http elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db import transaction
from django.utils import timezone

from openrouter_site.errors import BadRequest, Forbidden

from .models import Account, ApiKey, AuthCode, OAuthApp
from .services import api_key_create

CODE_TTL = dt.timedelta(minutes=10)
CODE_PREFIX = "auth_code_"
METHODS = ("S256", "plain")
MAX_CALLBACK = 2048
MAX_LABEL = 100
MAX_STATE = 1024
MAX_CODE = 200  # ours are 53 characters; anything much longer is not a code we gave out
MAX_VERIFIER = 128  # RFC 7636 §4.1
HEADLESS_ORIGIN = "headless:"
HEADLESS_NAME = "Headless app"
LOOPBACK_NAMES = {"localhost"}
# Schemes a browser would run, read from disk or hand to something other than the app.
REFUSED_SCHEMES = {
    "javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "view-source", "ftp", "ws", "wss",
    "mailto", "tel", "sms", "jar", "chrome", "chrome-extension", "moz-extension", "resource", "intent",
}
INVALID_CODE = "Invalid code or code_verifier"
EXPIRED_CODE = "Authorization code expired"
INVALID_METHOD = "Invalid code_challenge_method"

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]{0,31}")
# Hosts as DNS names (IDNs in punycode) or IP literals; they end up in the page's CSP, so nothing else.
_HOST = re.compile(r"[a-z0-9]([a-z0-9\-.]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\]")
_APP_NETLOC = re.compile(r"[a-z0-9\-._~]{0,253}(:[0-9]{1,5})?")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 §4.2


class OAuthInputError(BadRequest):
    """A parameter of the flow that cannot be accepted: a 400 in the API, a message on the page."""


@dataclass(frozen=True)
class Callback:
    """Where the app wants the user sent back, checked; ``url == ""`` is headless mode."""

    url: str
    origin: str  # the app's identity: "https://myapp.com", "http://localhost:3000", "vscode://ext.id"
    app_name: str  # what the user is shown: "myapp.com", "localhost:3000", "vscode://ext.id"
    csp_source: str  # what the consent page's form-action must allow for the redirect to happen

    @property
    def headless(self) -> bool:
        return not self.url


HEADLESS = Callback(url="", origin=HEADLESS_ORIGIN, app_name=HEADLESS_NAME, csp_source="")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def callback_parse(raw: object) -> Callback:
    """Check a ``callback_url``; ``None``/"" is headless mode. Raises ``OAuthInputError`` with a clear message."""
    if raw is None or raw == "":
        return HEADLESS
    if not isinstance(raw, str):
        raise OAuthInputError("'callback_url' must be a string")
    if len(raw) > MAX_CALLBACK:
        raise OAuthInputError(f"'callback_url' must be at most {MAX_CALLBACK} characters")
    if not raw.isprintable() or any(ch.isspace() for ch in raw) or "\\" in raw:
        raise OAuthInputError("'callback_url' must not contain spaces, backslashes or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise OAuthInputError("'callback_url' is not a valid URL") from None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        raise OAuthInputError("'callback_url' must be an absolute URL (https://…, http://localhost:PORT/… or app-scheme://…)")
    if scheme in REFUSED_SCHEMES:
        raise OAuthInputError(f"'callback_url' cannot use the {scheme}: scheme")
    if parts.fragment or raw.endswith("#"):
        raise OAuthInputError("'callback_url' must not have a #fragment")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OAuthInputError("'callback_url' must not contain a user name or password")
    host = (parts.hostname or "").lower()
    netloc = parts.netloc.lower()
    if scheme in ("http", "https"):
        if not host or not _HOST.fullmatch(netloc.rsplit(":", 1)[0] if parts.port else netloc):
            raise OAuthInputError("'callback_url' needs a valid host name")
        if _is_loopback(host):
            # OpenRouter's fixed title for loopback apps; 127.0.0.1 and [::1] are the same machine.
            port = port or (443 if scheme == "https" else 80)
            origin = f"{scheme}://{netloc}"
            return Callback(url=raw, origin=origin, app_name=f"localhost:{port}", csp_source=origin)
        if scheme == "http":
            raise OAuthInputError("'callback_url' must use https (plain http is allowed only for localhost / 127.0.0.1)")
        return Callback(url=raw, origin=f"https://{netloc}", app_name=netloc, csp_source=f"https://{netloc}")
    # A native app's custom scheme (vscode://publisher.ext/…, myapp://callback, com.example.app:/cb).
    if not _APP_NETLOC.fullmatch(netloc):
        raise OAuthInputError("'callback_url' has an invalid host part")
    origin = f"{scheme}://{netloc}" if parts.netloc else f"{scheme}:"
    return Callback(url=raw, origin=origin, app_name=origin, csp_source=f"{scheme}:")


def challenge_parse(challenge: object, method: object, *, required: bool) -> tuple[str, str]:
    """``(challenge, method)`` checked, or ``("", "")`` when the app sent none (allowed unless ``required``).

    RFC 7636: 43-128 unreserved characters; the method defaults to ``plain`` when omitted."""
    if method not in (None, "") and method not in METHODS:
        raise OAuthInputError(INVALID_METHOD)
    if challenge is None or challenge == "":
        if required:
            raise OAuthInputError("A code_challenge is required when there is no callback_url")
        return "", ""
    if not isinstance(challenge, str) or not _CHALLENGE.fullmatch(challenge):
        raise OAuthInputError("'code_challenge' must be 43-128 characters of A-Z, a-z, 0-9 and - . _ ~")
    return challenge, method or "plain"


def label_parse(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise OAuthInputError("'key_label' must be a string")
    label = raw.strip()
    if len(label) > MAX_LABEL:
        raise OAuthInputError(f"'key_label' must be at most {MAX_LABEL} characters")
    if not label.isprintable():
        raise OAuthInputError("'key_label' must not contain control characters")
    return label


def state_parse(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_STATE or "\x00" in raw:
        raise OAuthInputError(f"'state' must be a string of at most {MAX_STATE} characters")
    return raw


def s256(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(ASCII(verifier))) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii", errors="surrogateescape")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(*, challenge: str, method: str, verifier: str) -> bool:
    try:
        derived = s256(verifier) if method == "S256" else verifier
        return hmac.compare_digest(derived.encode(), challenge.encode())
    except (UnicodeEncodeError, ValueError):
        return False


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", errors="surrogatepass")).hexdigest()


def callback_redirect_url(callback_url: str, params: dict[str, str]) -> str:
    """``callback_url`` with ``params`` added to its query; its own query is kept (ours replace same-named ones)."""
    parts = urlsplit(callback_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, v) for k, v in params.items() if v]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# --- writes ------------------------------------------------------------------------------------


def oauth_app_get_or_create(*, callback: Callback) -> OAuthApp:
    app, _ = OAuthApp.objects.get_or_create(origin=callback.origin[:300], defaults={"name": callback.app_name[:300]})
    return app


def oauth_code_create(
    *,
    account: Account,
    user,
    callback: Callback,
    code_challenge: str = "",
    code_challenge_method: str = "",
    key_label: str = "",
    key_limit: int | None = None,
    key_limit_reset: str | None = None,
    key_expires_at: dt.datetime | None = None,
) -> tuple[AuthCode, str]:
    """The user's consent: a code for ``callback``'s app, valid once for ten minutes. Returns the
    row and the plaintext code, which is never stored (only its hash)."""
    if callback.headless and not code_challenge:
        raise OAuthInputError("A code_challenge is required when there is no callback_url")
    raw = CODE_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        app = oauth_app_get_or_create(callback=callback)
        code = AuthCode.objects.create(
            code_hash=code_hash(raw),
            account=account,
            user=user,
            app=app,
            callback_url=callback.url,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method if code_challenge else "",
            key_label=key_label,
            key_limit=key_limit,
            key_limit_reset=key_limit_reset,
            key_expires_at=key_expires_at,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    return code, raw


def oauth_code_exchange(*, code: str, code_verifier: str | None, code_challenge_method: str | None) -> tuple[ApiKey, str]:
    """Trade a code (and its verifier) for a new API key, once. Returns the key and its plaintext.

    The code's row is locked for the check and the key's creation, so concurrent exchanges of
    one code are served one at a time: the first creates the key, the others find it used (403).
    A wrong verifier does not use the code up; a replay, an unknown or an expired code is a 403."""
    if code_challenge_method not in (None, *METHODS):
        raise BadRequest(INVALID_METHOD)
    if not code or len(code) > MAX_CODE:
        raise Forbidden(INVALID_CODE)
    now = timezone.now()
    with transaction.atomic():
        row = (
            AuthCode.objects.select_for_update(of=("self",))
            .select_related("account", "app")
            .filter(code_hash=code_hash(code))
            .first()
        )
        if row is None or row.used_at is not None or row.account.closed_at is not None:
            raise Forbidden(INVALID_CODE)
        if row.expires_at <= now:
            raise Forbidden(EXPIRED_CODE)
        if row.code_challenge:
            method = code_challenge_method or row.code_challenge_method
            if (
                method != row.code_challenge_method
                or not isinstance(code_verifier, str)
                or len(code_verifier) > MAX_VERIFIER
                or not verifier_matches(challenge=row.code_challenge, method=method, verifier=code_verifier)
            ):
                raise Forbidden(INVALID_CODE)
        api_key, raw = api_key_create(
            account=row.account,
            name=row.key_label or row.app.name,
            creator=row.user,
            limit=row.key_limit,
            limit_reset=row.key_limit_reset,
            expires_at=row.key_expires_at,
        )
        row.used_at = now
        row.api_key = api_key
        row.save(update_fields=["used_at", "api_key"])
    return api_key, raw
