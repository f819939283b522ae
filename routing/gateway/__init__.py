"""The inference hot path: ``POST /api/v1/chat/completions`` and ``/api/v1/completions``.

A plain ASGI handler, mounted by ``openrouter_site.asgi`` in front of Django, so no view or
middleware machinery runs per request. Nothing here touches the database on the event loop:
the key, the catalog and BYOK keys come from in-process caches (misses are read in a worker
thread), the credit hold is one atomic counter operation, and the charge and the generation
record are handed to the settlement writer after the response is out. Billing is reached
only through ``billing.metering`` (and ``billing.money``).

The rooms, each importing only the ones below it:
  app.py        the ASGI entry: which surface a path is, and the lifespan
  messages.py   the Anthropic Messages surface (/messages, /messages/count_tokens): its responders
                and error envelope; the body is translated by ``routing.dialects.messages``
  call.py       the call outline, the same for every surface: read body (413) -> authenticate
                (401/403) -> validate (400) -> plan the route (400/404) -> free-model rate limit
                (429) -> web search -> the attempts
  responders.py the JSON and the SSE responder of the OpenAI-shaped surfaces: send one attempt,
                answer the client, charge the real cost
  attempts.py   the one attempt loop: for each planned attempt, build what is sent (file parsing,
                compression, dialect translation), size the hold from it (402 on the first), hand
                it to the responder, fall back on a failure before the first token
  state.py      what a call knows and records (its meter, attempts, generation record) and how it
                sends an answer or an error
  sessions.py   the same call for a signed-in browser session (the chatroom's socket): the outline
                from the parsed body on (``Call.serve``), its SSE events handed to an event sink, a
                stop event as the client disconnecting

A new inference surface (Anthropic Messages, OpenAI Responses, the chatroom) is a ``Surface``:
its parser and its two responders; the outline and the attempt loop stay as they are.
"""

from .app import GatewayApp, Surface
from .sessions import EventSink, SessionOutcome, session_call_run

__all__ = ["EventSink", "GatewayApp", "SessionOutcome", "Surface", "session_call_run"]
