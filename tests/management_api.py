"""Calling the management API (keys, BYOK, guardrails) through Django's test client, and reading
its error envelope: the helpers the API tests share."""

from __future__ import annotations

import json

from tests.factories import KeyBundle


def call(client, method: str, path: str, auth: KeyBundle | None = None, body=None, raw: str | None = None):
    """``method path`` under ``/api/v1`` with ``auth``'s bearer key and ``body`` (or ``raw``) as JSON."""
    headers = dict(auth.headers) if auth else {}
    kwargs = {}
    if body is not None or raw is not None:
        kwargs = {"data": raw if raw is not None else json.dumps(body), "content_type": "application/json"}
    return getattr(client, method.lower())(f"/api/v1{path}", headers=headers, **kwargs)


def assert_error(response, status: int, message: str | None = None) -> str:
    """The response is OpenRouter's error envelope with ``status`` (and ``message``); its message."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    if message is not None:
        assert body["error"]["message"] == message
    return body["error"]["message"]
