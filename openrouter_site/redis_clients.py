"""Shared Redis connections (only when REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aredis
from django.conf import settings

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
POOL_WAIT_SECONDS = 10  # a command that waits longer for a free connection fails (ConnectionError)
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = weakref.WeakKeyDictionary()


def redis_enabled() -> bool:
    return bool(settings.REDIS_URL)


def sync_client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL)
    return _sync_client


def async_client() -> aredis.Redis:
    """One client (and pool) per event loop: the ASGI server's loop in practice.

    The pool is bounded and blocking: a burst of requests waits a moment for one of
    ``REDIS_ASYNC_POOL_SIZE`` connections instead of each opening its own (500 requests
    opening 500 connections at once took 1-2 s on a 2-core machine; ``bench/burst.py``).
    No ``CLIENT SETINFO`` on connect: one round trip less per connection.
    """
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_ASYNC_POOL_SIZE,
            timeout=POOL_WAIT_SECONDS,
            lib_name=None,
            lib_version=None,
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client
