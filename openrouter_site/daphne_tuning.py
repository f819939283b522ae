"""Daphne's HTTP layer (Twisted) on the hot path: three measured fixes.

1. Twisted parses every POST's ``Content-Type`` with ``email.message.EmailMessage`` (to decide
whether the body is a form it should decode) — about 7% of a gateway request's CPU under
Daphne (py-spy, ``--gil``, PostgreSQL + Redis, c=16). The answer depends only on the header's
bytes, and clients send the same few values, so it is memoised (bounded; an unusual value is
parsed as before).
2. Twisted's ``HTTPFactory.log`` formats a combined-log line for every request (about 3.5%) and
   hands it to Twisted's log, which Daphne sends nowhere at its default verbosity. Daphne's own
   access log (``--access-log``) is written elsewhere and is unaffected.
3. Twisted does not send a write when it is made: it buffers the bytes, asks the event loop to
   report the socket writable, and sends on a later loop iteration, after whatever else is
   ready runs first. The gateway goes on after its last ``send`` (endpoint stats, stickiness in
   Redis), so the answer sat in Twisted's buffer meanwhile: at c=1 Daphne's p50 was 2.06 ms
   against 1.52 ms with the bytes sent at once (uvicorn 1.30 ms; ``bench/run.py``'s request,
   PostgreSQL + Redis, medians of 4 runs). Each ASGI body message is now sent as it is made,
   through the same step the reactor runs when the socket is writable (``_readOrWrite``: what
   does not fit stays buffered for the writable event, and a finished ``Connection: close``
   closes there as it would a loop iteration later), as uvicorn does.

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


_write_step = None


def _reactor_write_step():
    """The reactor's own step for a writable socket (``_readOrWrite``), or None on a reactor without
    it. Looked up at the first reply: Daphne has installed its asyncio reactor by then, and importing
    the reactor earlier, from a process that is not Daphne, would install the default one."""
    global _write_step
    if _write_step is None:
        from twisted.internet import reactor

        _write_step = getattr(reactor, "_readOrWrite", False)
    return _write_step or None


def replies_send_at_once() -> bool:
    try:
        from daphne.http_protocol import WebRequest
        from twisted.internet import tcp
    except ImportError:
        return False
    original = WebRequest.handle_reply
    if getattr(original, "sends_at_once", False):
        return False

    def handle_reply(self, message):
        channel = self.channel
        transport = channel.transport if channel is not None else None  # finish() lets go of the channel
        original(self, message)
        if (
            type(transport) is tcp.Server
            and transport.connected
            and (transport._tempDataLen or transport.dataBuffer)
            and message.get("type") == "http.response.body"
        ):
            send_now = _reactor_write_step()
            if send_now is not None:
                send_now(transport, False)

    handle_reply.sends_at_once = True
    WebRequest.handle_reply = handle_reply
    return True


def daphne_tune() -> None:
    content_type_parsing_memoise()
    twisted_access_lines_skip()
    replies_send_at_once()
