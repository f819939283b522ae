"""Prompt logging: opt-in per account, stored encrypted off the hot path, returned to its owner only by
``GET /api/v1/generation/content``, purged after the retention by the Celery task."""

from __future__ import annotations

import datetime as dt

import httpx
import orjson
import pytest
from django.db import transaction

from accounts.services import account_privacy_update
from activity.content_log import content_flush
from activity.models import GenerationContent
from activity.tasks import generation_contents_purge_expired
from tests.factories import make_key
from tests.openapi import validate_response

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_PROMPT = "My secret prompt about zebras"


def logging_on(account, on: bool = True) -> None:
    with transaction.atomic():
        account_privacy_update(account=account, allow_training_paid=True, allow_training_free=True, zdr_only=False,
                               allowed_providers=[], ignored_providers=[], allow_training_discount=on)


def content(server, bundle, generation_id: str) -> httpx.Response:
    return httpx.get(f"{server.api}/generation/content", params={"id": generation_id}, headers=bundle.headers, timeout=30)


def chat(server, bundle, **extra) -> httpx.Response:
    body = {"model": "openai/gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": SECRET_PROMPT}],
            **extra}
    return httpx.post(f"{server.api}/chat/completions", json=body, headers=bundle.headers, timeout=30)


def test_logged_request_and_answer_come_back_to_their_owner_only(gateway):
    bundle = make_key(credits="5")
    logging_on(bundle.account)
    response = chat(gateway, bundle)
    assert response.status_code == 200, response.text
    answer = response.json()["choices"][0]["message"]["content"]
    generation_id = response.json()["id"]
    assert content_flush(10)
    stored = content(gateway, bundle, generation_id)
    assert stored.status_code == 200, stored.text
    validate_response("/generation/content", "get", 200, stored.json())
    data = stored.json()["data"]
    assert data["input"] == {"messages": [{"role": "user", "content": SECRET_PROMPT}]}
    assert data["output"]["completion"] == answer and data["error"] is None
    row = GenerationContent.objects.get(generation_id=generation_id)
    assert "zebras" not in row.encrypted and answer not in row.encrypted  # encrypted at rest
    assert row.expires_at - row.created_at == dt.timedelta(days=30)

    # another account (even with logging on) gets a 404, as does a made-up id
    other = make_key()
    logging_on(other.account)
    assert content(gateway, other, generation_id).status_code == 404
    assert content(gateway, bundle, "gen-1700000000-AAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert content(gateway, bundle, "not-an-id").status_code == 404
    missing = httpx.get(f"{gateway.api}/generation/content", headers=bundle.headers, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 400
    assert httpx.get(f"{gateway.api}/generation/content", params={"id": generation_id}, timeout=30).status_code == 401


def test_streams_and_embeddings_are_logged_too(gateway):
    bundle = make_key(credits="5")
    logging_on(bundle.account)
    with httpx.stream("POST", f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
                      json={"model": "openai/gpt-4o-mini", "max_tokens": 8, "stream": True,
                            "messages": [{"role": "user", "content": SECRET_PROMPT}]}) as stream:
        generation_id = stream.headers["x-generation-id"]
        chunks = [orjson.loads(line[6:]) for line in stream.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    assert text
    embedded = httpx.post(f"{gateway.api}/embeddings", headers=bundle.headers, timeout=30,
                          json={"model": "openai/text-embedding-3-small", "input": ["a", "b"]})
    assert embedded.status_code == 200
    assert content_flush(10)
    data = content(gateway, bundle, generation_id).json()["data"]
    assert data["output"]["completion"] == text
    data = content(gateway, bundle, embedded.json()["id"]).json()["data"]
    assert data["input"] == {"prompt": "a\nb"} and data["output"]["completion"] == "[2 embedding(s)]"


def test_nothing_is_stored_when_logging_is_off(gateway):
    bundle = make_key(credits="5")
    response = chat(gateway, bundle)
    assert response.status_code == 200
    assert content_flush(10)
    assert content(gateway, bundle, response.json()["id"]).status_code == 404
    assert not GenerationContent.objects.exists()
    logging_on(bundle.account)
    logging_on(bundle.account, on=False)
    response = chat(gateway, bundle)
    assert content_flush(10)
    assert content(gateway, bundle, response.json()["id"]).status_code == 404


def test_the_purge_task_removes_expired_content(gateway, celery_eager):
    bundle = make_key(credits="5")
    logging_on(bundle.account)
    old, new = chat(gateway, bundle).json()["id"], chat(gateway, bundle).json()["id"]
    assert content_flush(10)
    GenerationContent.objects.filter(generation_id=old).update(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert generation_contents_purge_expired.delay().get() == 1
    assert content(gateway, bundle, old).status_code == 404
    assert content(gateway, bundle, new).status_code == 200
