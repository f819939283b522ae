"""The chatroom socket (chatroom/consumers.py) through Channels' WebsocketCommunicator and the real ASGI
stack (session auth, origin check), real HTTP to the provider simulator, PostgreSQL and the settlement writer."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import Account
from activity.models import Generation
from billing.selectors import ledger_drift
from billing.settlement import settlement_flush
from openrouter_site.asgi import application
from routing.models import Endpoint
from tests.dashboard.helpers import signed_in_user

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "testserver"
ORIGIN = f"http://{HOST}"
HI = [{"role": "user", "content": "Say hello in five words."}]


def paid_models(count: int) -> list[tuple[str, Endpoint]]:
    """``count`` paid models, each served by one OpenAI-dialect provider, different providers: (slug, endpoint)."""
    by_model: dict[str, list[Endpoint]] = {}
    for endpoint in Endpoint.objects.filter(active=True, price_prompt__gt=0).select_related("model", "provider"):
        by_model.setdefault(endpoint.model.slug, []).append(endpoint)
    chosen, providers = [], set()
    for slug, endpoints in sorted(by_model.items()):
        if len(endpoints) == 1 and endpoints[0].provider.dialect == "openai" and endpoints[0].provider.slug not in providers:
            chosen.append((slug, endpoints[0]))
            providers.add(endpoints[0].provider.slug)
        if len(chosen) == count:
            return chosen
    raise AssertionError("the catalog lacks single-provider OpenAI-dialect models")


def session_headers(credits: str = "10", *, origin: str | None = ORIGIN) -> tuple[list, Account]:
    client = Client()
    _user, account = signed_in_user(client, credits=credits)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    headers = [(b"host", HOST.encode()), (b"cookie", cookie.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers, account


def communicator(headers: list) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/chat", headers=headers)


async def frames_until(ws: WebsocketCommunicator, done: set[str], *, timeout: float = 30) -> list[dict]:
    """Frames until every column in ``done`` has its ``done`` or ``error`` frame; acknowledges as it reads."""
    frames, left = [], set(done)
    while left:
        frame = orjson.loads(await ws.receive_from(timeout=timeout))
        frames.append(frame)
        await ws.send_to(text_data=orjson.dumps({"type": "ack", "frames": len(frames) + 1}).decode())
        if frame["type"] in ("done", "error") and frame.get("column") in left:
            left.discard(frame["column"])
    return frames


def text_of(frames: list[dict], column: str) -> str:
    return "".join(
        (chunk["choices"][0].get("delta") or {}).get("content") or ""
        for f in frames if f["type"] == "chunks" and f["column"] == column
        for chunk in f["data"] if chunk.get("choices")
    )


async def connect(headers: list) -> WebsocketCommunicator:
    ws = communicator(headers)
    connected, _ = await ws.connect()
    assert connected
    ready = await ws.receive_json_from(timeout=10)
    assert ready["type"] == "ready" and ready["max_models"] == 4
    return ws


def balance(account: Account) -> int:
    settlement_flush()
    account.refresh_from_db()
    return account.balance


# --- who may open the socket ------------------------------------------------------------------------


def test_anonymous_socket_gets_a_sign_in_message_and_is_closed(catalog):
    async def run():
        ws = communicator([(b"host", HOST.encode()), (b"origin", ORIGIN.encode())])
        connected, _ = await ws.connect()
        assert connected
        frame = await ws.receive_json_from(timeout=10)
        assert frame["type"] == "error" and frame["error"]["code"] == 401
        assert "Sign in" in frame["error"]["message"]
        closed = await ws.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": 4401}

    asyncio.run(run())


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None, "http://testserver.evil.example"])
def test_socket_from_another_origin_is_refused(catalog, origin):
    headers, account = session_headers(origin=origin)

    async def run():
        ws = communicator(headers)
        connected, code = await ws.connect()
        assert not connected and code == 4403

    asyncio.run(run())
    assert not Generation.objects.filter(account=account).exists()


def test_trusted_origin_is_accepted(catalog, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    headers, _account = session_headers(origin="https://chat.example.com")

    async def run():
        ws = await connect(headers)
        await ws.disconnect()

    asyncio.run(run())


def test_a_socket_quiet_for_longer_than_the_layers_blocking_read_stays_usable(catalog):
    """The Redis channel layer waits on a 5 s blocking pop; its reads must not time out (redis-py 8's
    default socket timeout is 5 s too: every quiet socket died after 5 s, a long answer with it)."""
    headers, _account = session_headers()

    async def run():
        ws = await connect(headers)
        await asyncio.sleep(7)
        await ws.send_to(text_data="not json")
        frame = await ws.receive_json_from(timeout=10)
        assert frame["type"] == "error" and frame["error"]["code"] == 400
        await ws.disconnect()

    asyncio.run(run())


# --- fan-out and exact billing -------------------------------------------------------------------------


def test_two_models_stream_side_by_side_and_the_costs_shown_are_what_the_balance_lost(gateway, simulator):
    (slug_a, endpoint_a), (slug_b, endpoint_b) = paid_models(2)
    headers, account = session_headers()
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [
            {"id": "a", "model": slug_a, "messages": HI, "temperature": 0.5},
            {"id": "b", "model": slug_b, "messages": HI, "max_tokens": 50},
        ]})
        frames = await frames_until(ws, {"a", "b"})
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    done = {f["column"]: f for f in frames if f["type"] == "done"}
    assert set(done) == {"a", "b"}, frames
    assert text_of(frames, "a") and text_of(frames, "b")
    assert done["a"]["model"] == slug_a and done["b"]["model"] == slug_b
    assert done["a"]["provider"] == endpoint_a.provider.name and not done["a"]["stopped"]
    assert all(d["cost_nanos"] > 0 for d in done.values())
    assert before - balance(account) == done["a"]["cost_nanos"] + done["b"]["cost_nanos"]
    generations = {g.id: g for g in Generation.objects.filter(account=account)}
    assert set(generations) == {done["a"]["generation_id"], done["b"]["generation_id"]}
    for d in done.values():
        generation = generations[d["generation_id"]]
        assert generation.app_title == "Chatroom" and generation.api_key_id is None and generation.streamed
        assert generation.cost == d["cost_nanos"]
        assert generation.tokens_completion == d["usage"]["completion_tokens"] > 0
    assert simulator.last_request(endpoint_b.provider.slug)["max_tokens"] == 50
    assert ledger_drift(account_id=account.id) == []


def test_stop_cancels_that_columns_upstream_request_and_charges_only_what_was_delivered(gateway, simulator):
    (slug_a, endpoint_a), (slug_b, endpoint_b) = paid_models(2)
    slow = endpoint_a.provider.slug
    simulator.set(slow, tokens_per_second=20, completion_tokens=400)
    headers, account = session_headers()
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [
            {"id": "a", "model": slug_a, "messages": HI}, {"id": "b", "model": slug_b, "messages": HI},
        ]})
        frames, stopped = [], False
        while True:
            frame = orjson.loads(await ws.receive_from(timeout=30))
            frames.append(frame)
            await ws.send_json_to({"type": "ack", "frames": len(frames) + 1})
            if not stopped and len([f for f in frames if f["type"] == "chunks" and f["column"] == "a"]) >= 3:
                await ws.send_json_to({"type": "stop", "column": "a"})
                stopped = True
            if len([f for f in frames if f["type"] == "done"]) == 2:
                break
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    done = {f["column"]: f for f in frames if f["type"] == "done"}
    assert done["a"]["stopped"] is True and done["b"]["stopped"] is False
    simulator.wait_for_stats(slow, lambda s: s["cancelled"] == 1, timeout=10)
    assert simulator.stats(endpoint_b.provider.slug)["cancelled"] == 0
    settlement_flush()
    generation = Generation.objects.get(id=done["a"]["generation_id"])
    assert generation.cancelled is True
    assert 1 <= generation.tokens_completion < 400
    assert generation.cost == done["a"]["cost_nanos"] > 0
    assert before - balance(account) == done["a"]["cost_nanos"] + done["b"]["cost_nanos"]


def test_closing_the_socket_cancels_every_running_call(gateway, simulator):
    (slug_a, endpoint_a), = paid_models(1)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=20, completion_tokens=400)
    headers, account = session_headers()
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [{"id": "a", "model": slug_a, "messages": HI}]})
        chunks = 0
        while chunks < 2:
            frame = await ws.receive_json_from(timeout=30)
            chunks += frame["type"] == "chunks"
        await ws.disconnect()

    asyncio.run(run())
    simulator.wait_for_stats(endpoint_a.provider.slug, lambda s: s["cancelled"] == 1, timeout=10)
    settlement_flush()
    generation = Generation.objects.get(account=account)
    assert generation.cancelled is True and generation.app_title == "Chatroom"
    assert before - balance(account) == generation.cost


# --- refusals: nothing charged, the socket stays usable -------------------------------------------------


def test_empty_balance_is_the_402_message_with_the_credits_link(gateway, simulator):
    (slug_a, endpoint_a), = paid_models(1)
    headers, account = session_headers(credits="0")

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [{"id": "a", "model": slug_a, "messages": HI}]})
        frames = await frames_until(ws, {"a"})
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    error = next(f for f in frames if f["type"] == "error")
    assert error["column"] == "a" and error["error"]["code"] == 402
    assert "/settings/credits" in error["error"]["message"]
    assert simulator.stats(endpoint_a.provider.slug)["requests"] == 0
    assert balance(account) == 0


def test_bad_frames_get_clear_errors_and_the_socket_keeps_working(gateway, simulator, settings):
    settings.CHATROOM_MAX_FRAME_BYTES = 20_000
    (slug_a, endpoint_a), = paid_models(1)
    headers, account = session_headers()
    before = balance(account)
    five = [{"id": f"c{i}", "model": slug_a, "messages": HI} for i in range(5)]
    cases = [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "dance"}', "'type' must be"),
        ('{"type": "send", "columns": []}', "at least one model"),
        (orjson.dumps({"type": "send", "columns": five}).decode(), "At most 4 models"),
        ('{"type": "send", "columns": [{"id": "a b", "model": "x", "messages": []}]}', "column id"),
        (orjson.dumps({"type": "send", "columns": [{"id": "a", "model": slug_a, "messages": HI, "temperature": 9}]}).decode(),
         "temperature"),
        (orjson.dumps({"type": "send", "columns": [
            {"id": "a", "model": slug_a, "messages": [{"role": "user", "content": "x" * 30_000}]}]}).decode(), "too large"),
        ('{"type": "ack", "frames": -1}', "non-negative"),
    ]

    async def run():
        ws = await connect(headers)
        for text, expected in cases:
            await ws.send_to(text_data=text)
            frame = await ws.receive_json_from(timeout=10)
            assert frame["type"] == "error" and expected in frame["error"]["message"], (text[:60], frame)
        await ws.send_to(bytes_data=b"\x00\x01")
        frame = await ws.receive_json_from(timeout=10)
        assert "JSON text" in frame["error"]["message"]
        # a model that does not exist: the gateway's own 400, for that column only
        await ws.send_json_to({"type": "send", "columns": [
            {"id": "x", "model": "nobody/no-such-model", "messages": HI}, {"id": "a", "model": slug_a, "messages": HI}]})
        frames = await frames_until(ws, {"x", "a"})
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    error = next(f for f in frames if f["type"] == "error")
    assert error["column"] == "x" and error["error"]["code"] == 400 and "not a valid model" in error["error"]["message"]
    done = next(f for f in frames if f["type"] == "done")
    assert done["column"] == "a" and done["cost_nanos"] > 0
    assert simulator.stats(endpoint_a.provider.slug)["requests"] == 1  # only the valid column reached a provider
    assert before - balance(account) == done["cost_nanos"]


def test_a_model_the_accounts_privacy_settings_exclude_is_refused_and_not_charged(gateway, simulator):
    (slug_a, endpoint_a), (_slug_b, endpoint_b) = paid_models(2)
    headers, account = session_headers()
    Account.objects.filter(id=account.id).update(allowed_providers=[endpoint_b.provider.slug])
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [{"id": "a", "model": slug_a, "messages": HI}]})
        frames = await frames_until(ws, {"a"})
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    error = next(f for f in frames if f["type"] == "error")
    assert error["column"] == "a" and 400 <= error["error"]["code"] < 500, error
    assert simulator.stats(endpoint_a.provider.slug)["requests"] == 0
    assert balance(account) == before


def test_a_page_that_does_not_acknowledge_gets_no_more_than_the_window(gateway, simulator, settings):
    settings.CHATROOM_WINDOW_FRAMES = 4
    (slug_a, endpoint_a), = paid_models(1)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=200, completion_tokens=60)
    headers, account = session_headers()
    before = balance(account)

    async def run():
        ws = await connect(headers)  # "ready" was frame 1
        await ws.send_json_to({"type": "send", "columns": [{"id": "a", "model": slug_a, "messages": HI}]})
        held = [await ws.receive_json_from(timeout=30) for _ in range(3)]
        assert await ws.receive_nothing(timeout=1.0)  # window full: the consumer waits for the page
        await ws.send_json_to({"type": "ack", "frames": 4})
        rest = await frames_until(ws, {"a"})
        await ws.disconnect()
        return held + rest

    frames = asyncio.run(run())
    done = next(f for f in frames if f["type"] == "done")
    assert "".join(text_of(frames, "a").split()) and done["usage"]["completion_tokens"] == 60
    assert before - balance(account) == done["cost_nanos"]


def test_hostile_values_in_every_field_of_a_send_frame_are_answered_never_a_500(gateway, simulator):
    from tests.hostile.probe import HOSTILE_VALUES

    (slug_a, _endpoint), = paid_models(1)
    headers, account = session_headers()
    before = balance(account)
    valid = {"id": "a", "model": slug_a, "messages": HI, "max_tokens": 4}
    frames = []
    for value in HOSTILE_VALUES:
        frames.append({"type": value, "columns": [valid]})
        frames.append({"type": "send", "columns": value})
        frames.append({"type": "send", "columns": [value]})
        for name in ("id", "model", "messages", "temperature", "max_tokens", "reasoning"):
            frames.append({"type": "send", "columns": [{**valid, "id": "h", name: value}]})
        frames.append({"type": "send", "columns": [{**valid, "id": "h", "messages": [value]}]})
        frames.append({"type": "send", "columns": [{**valid, "id": "h", "messages": [{"role": "user", "content": value}]}]})
        frames.append({"type": "stop", "column": value})
        frames.append({"type": "ack", "frames": value})

    async def run():
        ws = await connect(headers)
        answered, costs = 0, 0
        for frame in frames:
            await ws.send_to(text_data=json.dumps(frame))  # the standard library writes lone surrogates and 2**70
            if frame["type"] in ("stop", "ack"):
                await ws.send_to(text_data='{"type": "sentinel"}')  # answered in order, after the frame's reply if any
                while True:
                    reply = await ws.receive_json_from(timeout=10)
                    assert reply["type"] == "error" and reply["error"]["code"] < 500, (frame, reply)
                    answered += 1
                    if "'type' must be" in reply["error"]["message"]:
                        break
                continue
            while True:  # until the frame is answered: an error, or the column's done
                reply = await ws.receive_json_from(timeout=30)
                if reply["type"] == "chunks":
                    continue
                assert reply["type"] in ("error", "done"), (frame, reply)
                if reply["type"] == "error":
                    assert reply["error"]["code"] < 500, (frame, reply)
                else:
                    costs += reply["cost_nanos"]
                answered += 1
                break
            await ws.send_json_to({"type": "ack", "frames": 10**9})
        await ws.send_json_to({"type": "send", "columns": [valid]})  # still usable
        rest = await frames_until(ws, {"a"})
        await ws.disconnect()
        return answered, costs + sum(f["cost_nanos"] for f in rest if f["type"] == "done")

    answered, costs = asyncio.run(run())
    assert answered >= len(frames) // 2
    assert before - balance(account) == costs



def test_free_models_answer_for_nothing_and_their_rate_limit_is_the_apis(gateway, simulator):
    from routing.ratelimits import FREE_MODEL_PER_MINUTE, free_model_check

    free = Endpoint.objects.filter(active=True, model__slug__endswith=":free").select_related("model").first().model.slug
    headers, account = session_headers(credits="1")
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [{"id": "f", "model": free, "messages": HI}]})
        first = await frames_until(ws, {"f"})
        for _ in range(FREE_MODEL_PER_MINUTE - 1):  # the rest of this minute's allowance, as the API counts it
            await free_model_check(account_id=account.id, purchased_nanos=0)
        await ws.send_json_to({"type": "send", "columns": [{"id": "f", "model": free, "messages": HI}]})
        second = await frames_until(ws, {"f"})
        await ws.disconnect()
        return first, second

    first, second = asyncio.run(run())
    done = next(f for f in first if f["type"] == "done")
    assert done["cost_nanos"] == 0 and done["usage"]["completion_tokens"] > 0
    error = next(f for f in second if f["type"] == "error")
    assert error["error"]["code"] == 429 and "free-models-per-min" in error["error"]["message"]
    assert balance(account) == before


def test_one_socket_cannot_stop_another_accounts_column(gateway, simulator):
    (slug_a, endpoint_a), = paid_models(1)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=100, completion_tokens=60)
    headers_a, account_a = session_headers()
    headers_b, _account_b = session_headers()

    async def run():
        a, b = await connect(headers_a), await connect(headers_b)
        await a.send_json_to({"type": "send", "columns": [{"id": "shared-id", "model": slug_a, "messages": HI}]})
        first = await a.receive_json_from(timeout=30)
        await b.send_json_to({"type": "stop", "column": "shared-id"})
        await b.send_json_to({"type": "stop"})
        frames = [first, *await frames_until(a, {"shared-id"})]
        await a.disconnect()
        await b.disconnect()
        return frames

    frames = asyncio.run(run())
    done = next(f for f in frames if f["type"] == "done")
    assert done["stopped"] is False and done["usage"]["completion_tokens"] == 60
    assert simulator.stats(endpoint_a.provider.slug)["cancelled"] == 0
    settlement_flush()
    assert Generation.objects.get(id=done["generation_id"]).account_id == account_a.id


def test_answers_streaming_at_once_on_one_socket_are_bounded(gateway, simulator, settings):
    settings.CHATROOM_MAX_RUNNING = 2
    (slug_a, endpoint_a), = paid_models(1)
    simulator.set(endpoint_a.provider.slug, tokens_per_second=10, completion_tokens=400)
    headers, account = session_headers()
    before = balance(account)

    async def run():
        ws = await connect(headers)
        await ws.send_json_to({"type": "send", "columns": [
            {"id": "a", "model": slug_a, "messages": HI}, {"id": "b", "model": slug_a, "messages": HI}]})
        await ws.send_json_to({"type": "send", "columns": [{"id": "c", "model": slug_a, "messages": HI}]})
        frames = []
        while not any(f["type"] == "error" for f in frames):
            frames.append(await ws.receive_json_from(timeout=30))
        await ws.send_json_to({"type": "stop"})
        frames += await frames_until(ws, {"a", "b"})
        await ws.disconnect()
        return frames

    frames = asyncio.run(run())
    error = next(f for f in frames if f["type"] == "error")
    assert error["column"] == "c" and error["error"]["code"] == 429
    done = [f for f in frames if f["type"] == "done"]
    assert {f["column"] for f in done} == {"a", "b"} and all(f["stopped"] for f in done)
    assert simulator.stats(endpoint_a.provider.slug)["requests"] == 2
    assert before - balance(account) == sum(f["cost_nanos"] for f in done)
