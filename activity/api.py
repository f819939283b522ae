"""GET /generation?id= (any key of the account) and GET /activity (management key)."""

from __future__ import annotations

import datetime as dt
import re
import time

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import api_key_from_request, management_key_from_request
from accounts.selectors import api_key_get_by_hash, member_key_ids
from billing.money import nanos_to_usd_number
from openrouter_site.errors import BadRequest, NotFound

from .content_log import InvalidToken, content_decrypt
from .presenters import generation_body
from .selectors import activity_by_day, generation_content_get, generation_get

KEY_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
GENERATION_ID = re.compile(r"^gen-(\d{9,11})-[A-Za-z0-9]{8,40}$")
# A generation is written a few milliseconds after its response; wait that long for a fresh id.
FRESH_SECONDS = 30
WAIT_SECONDS = 2.0


def _fresh_get(match, load):
    """``load()``; for a generation id minted in the last ``FRESH_SECONDS``, retried for up to
    ``WAIT_SECONDS`` while its record may still be on its way to the database."""
    found = load()
    if found is None and time.time() - int(match.group(1)) < FRESH_SECONDS:
        deadline = time.monotonic() + WAIT_SECONDS
        while found is None and time.monotonic() < deadline:
            time.sleep(0.02)
            found = load()
    return found


class GenerationApi(APIView):
    def get(self, request):
        api_key = api_key_from_request(request)
        generation_id = request.query_params.get("id", "")
        if not generation_id:
            raise BadRequest("'id' is required")
        match = GENERATION_ID.match(generation_id)
        if match is None:
            raise NotFound(f"Generation {generation_id} not found")
        generation = _fresh_get(match, lambda: generation_get(account_id=api_key.account_id, generation_id=generation_id))
        if generation is None:
            raise NotFound(f"Generation {generation_id} not found")
        return Response({"data": generation_body(generation)})


class GenerationContentApi(APIView):
    """GET /generation/content?id= (any key of the account): the stored prompt and answer, when the account
    logged prompts at the time (404 otherwise, and for another account's generation)."""

    def get(self, request):
        api_key = api_key_from_request(request)
        generation_id = request.query_params.get("id", "")
        if not generation_id:
            raise BadRequest("'id' is required")
        match = GENERATION_ID.match(generation_id)
        if match is None:
            raise NotFound(f"Generation {generation_id[:80]} not found")
        stored = _fresh_get(
            match, lambda: generation_content_get(account_id=api_key.account_id, generation_id=generation_id)
        )
        if stored is None:
            raise NotFound(f"No stored content for generation {generation_id} (prompt logging was off, or it expired)")
        try:
            content = content_decrypt(stored.encrypted)
        except InvalidToken:
            raise NotFound(f"The content of generation {generation_id} can no longer be decrypted") from None
        return Response({"data": content})


class ActivityApi(APIView):
    def get(self, request):
        manager = management_key_from_request(request)
        today = dt.datetime.now(dt.UTC).date()
        until = today - dt.timedelta(days=1)
        since = today - dt.timedelta(days=30)
        raw_date = request.query_params.get("date")
        if raw_date:
            try:
                day = dt.date.fromisoformat(raw_date)
            except ValueError:
                raise BadRequest("'date' must be YYYY-MM-DD") from None
            if not since <= day <= today:
                raise BadRequest("'date' must be within the last 30 days")
            since = until = day
        key_id = None
        key_hash = request.query_params.get("api_key_hash")
        if key_hash:
            api_key = api_key_get_by_hash(key_hash=key_hash.lower()) if KEY_HASH.match(key_hash) else None
            if api_key is None or api_key.account_id != manager.account_id:
                raise NotFound("API key not found")
            key_id = api_key.id
        key_ids = None
        user_id = request.query_params.get("user_id")
        if user_id:  # an organization member's activity: the keys they created in the account
            key_ids = member_key_ids(account=manager.account, user_public_id=user_id[:64]) if "\x00" not in user_id else None
            if key_ids is None:
                raise NotFound("Member not found")
        rows = activity_by_day(account_id=manager.account_id, since=since, until=until, key_id=key_id, key_ids=key_ids)
        return Response(
            {
                "data": [
                    {
                        "date": row["day"].isoformat(),
                        "model": row["model"],
                        "model_permaslug": row["model"],
                        "endpoint_id": str(row["endpoint_id"] or ""),
                        "provider_name": row["provider_name"],
                        "usage": nanos_to_usd_number(row["usage"] or 0),
                        "byok_usage_inference": nanos_to_usd_number(row["byok_usage"] or 0),
                        "requests": row["requests"],
                        "prompt_tokens": row["prompt_tokens"] or 0,
                        "completion_tokens": row["completion_tokens"] or 0,
                        "reasoning_tokens": row["reasoning_tokens"] or 0,
                    }
                    for row in rows
                ]
            }
        )
