"""Sticky routing for prompt caching.

After a request that could use a prompt cache, later requests of the same account,
model and conversation go to the same endpoint for 10 idle minutes (each success
resets the timer; errors do not). The conversation is ``session_id`` /
``x-session-id``, else ``prompt_cache_key``, else a hash of the first
system/developer message and the first other message. Only endpoints whose
cache-read price is below their prompt price are remembered. Redis when
``REDIS_URL`` is set (over the hot path's pipelined script client: redis-py's asyncio client
cost a quarter of a request's CPU for these two commands), else in-process.
"""

from __future__ import annotations

import hashlib
import time

import orjson
from django.conf import settings

from openrouter_site import redis_clients

IDLE_SECONDS = 600
_local: dict[str, tuple[float, int]] = {}


def conversation_key(*, account_id: int, model: str, body: dict, session_id: str) -> str:
    anchor = session_id or (body.get("prompt_cache_key") if isinstance(body.get("prompt_cache_key"), str) else "")
    if not anchor:
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        system = next((m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")), None)
        first = next((m for m in messages if isinstance(m, dict) and m.get("role") not in ("system", "developer")), None)
        anchor = hashlib.sha256(orjson.dumps([system, first], option=orjson.OPT_SORT_KEYS)).hexdigest()
    digest = hashlib.sha256(f"{account_id}\x00{model}\x00{anchor}".encode()).hexdigest()[:32]
    return f"{settings.COUNTER_PREFIX}:sticky:{digest}"


async def sticky_get(key: str) -> int | None:
    if redis_clients.redis_enabled():
        value = await redis_clients.script_client().execute("GET", key)
        return int(value) if value else None
    entry = _local.get(key)
    if entry is None or entry[0] < time.monotonic():
        _local.pop(key, None)
        return None
    return entry[1]


async def sticky_set(key: str, endpoint_id: int) -> None:
    if redis_clients.redis_enabled():
        await redis_clients.script_client().execute("SET", key, endpoint_id, "EX", IDLE_SECONDS)
        return
    if len(_local) > 100_000:
        _local.clear()
    _local[key] = (time.monotonic() + IDLE_SECONDS, endpoint_id)


def sticky_reset() -> None:
    _local.clear()


def caches_prompts(endpoint) -> bool:
    """Whether sticking to ``endpoint`` saves money: its cache reads cost less than prompt tokens."""
    return endpoint.price_cache_read is not None and endpoint.price_cache_read < endpoint.price_prompt
