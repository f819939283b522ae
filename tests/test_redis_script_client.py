"""The hot path's pipelined Redis client: ordered replies, script loading, cancellation, reconnection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from django.conf import settings

from openrouter_site import redis_clients

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def test_pipelined_commands_get_their_own_replies():
    async def run():
        client = redis_clients.ScriptClient(settings.REDIS_URL)
        source = f"return {{tonumber(ARGV[1]), KEYS[1]}} -- {uuid.uuid4()}"  # unknown: NOSCRIPT, then loaded
        replies = await asyncio.gather(*(client.evalsha(source, [f"k{n}"], [n]) for n in range(200)))
        assert replies == [[n, f"k{n}".encode()] for n in range(200)]
        with pytest.raises(redis.ResponseError):
            await client.execute("NOSUCHCOMMAND")
        assert await client.execute("PING") == b"PONG"

    asyncio.run(run())


def test_a_cancelled_caller_does_not_shift_the_replies_of_others():
    async def run():
        client = redis_clients.ScriptClient(settings.REDIS_URL)
        slow = asyncio.ensure_future(client.execute("BLPOP", "script-client-test:never", "0.3"))
        await asyncio.sleep(0.05)
        slow.cancel()
        assert await client.execute("ECHO", "after") == b"after"  # not the BLPOP's reply

    asyncio.run(run())


def test_a_dropped_connection_fails_its_commands_and_the_next_one_reconnects():
    async def run():
        client = redis_clients.ScriptClient(settings.REDIS_URL)
        assert await client.execute("CLIENT", "SETNAME", "script-client-test") == b"OK"
        for entry in redis_clients.sync_client().client_list():
            if entry.get("name") == "script-client-test":
                redis_clients.sync_client().client_kill_filter(_id=entry["id"])
        with pytest.raises(redis.ConnectionError):
            await client.execute("PING")
        assert await client.execute("PING") == b"PONG"

    asyncio.run(run())


def test_the_commands_of_one_loop_turn_leave_in_one_write():
    async def run():
        client = redis_clients.ScriptClient(settings.REDIS_URL)
        assert await client.execute("PING") == b"PONG"  # connected
        writer = client._conn.writer
        writes = []
        original = writer.write
        writer.write = lambda data: (writes.append(data), original(data))
        replies = await asyncio.gather(*(client.execute("ECHO", f"m{n}") for n in range(50)))
        assert replies == [f"m{n}".encode() for n in range(50)]
        assert len(writes) == 1 and writes[0].count(b"ECHO") == 50
        assert await client.execute("ECHO", "alone") == b"alone"  # a later turn: its own write
        assert len(writes) == 2

    asyncio.run(run())
