"""Daphne's HTTP layer (Twisted) on the hot path: two measured fixes.

1. Twisted parses every POST's ``Content-Type`` with ``email.message.EmailMessage`` (to decide
whether the body is a form it should decode) — about 7% of a gateway request's CPU under
Daphne (py-spy, ``--gil``, PostgreSQL + Redis, c=16). The answer depends only on the header's
bytes, and clients send the same few values, so it is memoised (bounded; an unusual value is
parsed as before).
2. Twisted's ``HTTPFactory.log`` formats a combined-log line for every request (about 3.5%) and
   hands it to Twisted's log, which Daphne sends nowhere at its default verbosity. Daphne's own
   access log (``--access-log``) is written elsewhere and is unaffected.

Nothing else of Twisted's behaviour changes. Applied by ``asgi.py``; a Twisted or Daphne without
these names is left alone.
"""

from __future__ import annotations

import functools


def content_type_parsing_memoise() -> bool:
    try:
        from twisted.web import http
    except ImportError:
        return False
    original = getattr(http, "_parseContentType", None)
    if original is None or hasattr(original, "cache_info"):
        return False
    http._parseContentType = functools.lru_cache(maxsize=64)(original)
    return True


def _no_twisted_access_line(self, request) -> None:
    return None


def twisted_access_lines_skip() -> bool:
    try:
        from daphne.http_protocol import HTTPFactory
    except ImportError:
        return False
    if not hasattr(HTTPFactory, "log"):
        return False
    HTTPFactory.log = _no_twisted_access_line
    return True


def daphne_tune() -> None:
    content_type_parsing_memoise()
    twisted_access_lines_skip()
