"""The presets API and presets used in inference, through the live server and the simulator."""

from __future__ import annotations

import httpx
import pytest

from billing.money import tokens_cost
from billing.selectors import ledger_sum
from billing.settlement import settlement_flush
from presets.models import Preset, PresetVersion
from tests.factories import make_key
from tests.openapi import validate_response
from tests.routing.gateway_helpers import endpoints_of

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"


def api(server, bundle, method: str, path: str, body=None) -> httpx.Response:
    return httpx.request(method, f"{server.api}/{path}", json=body, headers=bundle.headers, timeout=30)


def chat(server, bundle, body: dict) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "Say hello."}], **body}
    return httpx.post(f"{server.api}/chat/completions", json=body, headers=bundle.headers, timeout=30)


def sent_to(simulator, slug: str) -> dict:
    return simulator.last_request(slug)


def create(server, bundle, slug: str, body: dict, surface: str = "chat/completions") -> dict:
    response = api(server, bundle, "POST", f"presets/{slug}/{surface}", body)
    assert response.status_code == 200, response.text
    validate_response(f"/presets/{{slug}}/{surface}", "post", 200, response.json())
    return response.json()["data"]


def test_create_from_each_surface_then_read_it_back(gateway):
    bundle = make_key()
    first = create(gateway, bundle, "helper", {
        "model": MODEL, "temperature": 0.3, "stream": True, "tools": [],
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "ignored"}],
    })
    assert first["slug"] == "helper" and first["status"] == "active"
    version = first["designated_version"]
    assert version["version"] == 1 and version["system_prompt"] == "You are terse."
    assert version["config"] == {"model": MODEL, "temperature": 0.3, "tools": []}
    second = create(gateway, bundle, "helper", {
        "model": "anthropic/claude-3.5-sonnet", "max_tokens": 300, "system": "Messages system",
        "tools": [{"name": "f", "input_schema": {"type": "object"}}], "messages": [],
    }, surface="messages")
    assert second["id"] == first["id"] and second["designated_version"]["version"] == 2
    assert second["designated_version"]["config"]["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    third = create(gateway, bundle, "helper", {"model": MODEL, "instructions": "Responses instructions",
                                               "max_output_tokens": 40, "input": "x"}, surface="responses")
    assert third["designated_version"]["version"] == 3
    assert third["designated_version"]["system_prompt"] == "Responses instructions"
    assert third["designated_version"]["config"] == {"model": MODEL, "max_tokens": 40}

    listing = api(gateway, bundle, "GET", "presets")
    validate_response("/presets", "get", 200, listing.json())
    assert [p["slug"] for p in listing.json()["data"]] == ["helper"] and listing.json()["total_count"] == 1
    one = api(gateway, bundle, "GET", "presets/helper")
    validate_response("/presets/{slug}", "get", 200, one.json())
    assert one.json()["data"]["designated_version"]["version"] == 3
    versions = api(gateway, bundle, "GET", "presets/helper/versions")
    validate_response("/presets/{slug}/versions", "get", 200, versions.json())
    assert [v["version"] for v in versions.json()["data"]] == [1, 2, 3] and versions.json()["total_count"] == 3
    page = api(gateway, bundle, "GET", "presets/helper/versions?offset=1&limit=1").json()
    assert [v["version"] for v in page["data"]] == [2] and page["total_count"] == 3
    v2 = api(gateway, bundle, "GET", "presets/helper/versions/2")
    validate_response("/presets/{slug}/versions/{version}", "get", 200, v2.json())
    assert v2.json()["data"]["system_prompt"] == "Messages system"


def test_another_accounts_presets_are_not_found(gateway):
    owner, other = make_key(), make_key()
    create(gateway, owner, "secret-sauce", {"model": MODEL, "temperature": 0.1})
    for path in ("presets/secret-sauce", "presets/secret-sauce/versions", "presets/secret-sauce/versions/1"):
        response = api(gateway, other, "GET", path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == 404
    assert api(gateway, other, "GET", "presets").json() == {"data": [], "total_count": 0}
    # Another account's slug is a preset of one's own: creating it makes a separate preset, never a new version.
    mine = create(gateway, other, "secret-sauce", {"model": "openai/gpt-4o"})
    assert mine["designated_version"]["version"] == 1
    assert Preset.objects.filter(slug="secret-sauce").count() == 2
    response = chat(gateway, other, {"model": "@preset/secret-sauce"})
    assert response.status_code == 200 and response.json()["model"] == "openai/gpt-4o"
    assert api(gateway, owner, "GET", "presets/secret-sauce").json()["data"]["designated_version"]["config"]["model"] == MODEL


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "presets?limit=0", None, 400),
        ("GET", "presets?limit=101", None, 400),
        ("GET", "presets?offset=-1", None, 400),
        ("GET", "presets/nope", None, 404),
        ("GET", "presets/helper/versions/abc", None, 400),
        ("GET", "presets/helper/versions/9", None, 404),
        ("POST", "presets/Bad Slug/chat/completions", {"model": MODEL}, 400),
        ("POST", "presets/ok/chat/completions", [1, 2], 400),
        ("POST", "presets/ok/chat/completions", {"temperature": "hot"}, 400),
        ("POST", "presets/ok/chat/completions", {"temperature": 9}, 400),
        ("POST", "presets/ok/chat/completions", {"tools": [{"type": "function", "function": {"name": 5}}]}, 400),
        ("POST", "presets/ok/chat/completions", {"provider": {"order": "openai"}}, 400),
        ("POST", "presets/ok/chat/completions", {"model": "@preset/ok"}, 400),
        ("POST", "presets/ok/messages", {"system": 5}, 400),
        ("POST", "presets/ok/messages", {"tools": ["x"]}, 400),
        ("POST", "presets/ok/responses", {"instructions": ["x"]}, 400),
        ("POST", "presets/ok/chat/completions", {"model": "a\u0000b"}, 400),
        ("POST", "presets/ok/chat/completions", {"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "maximum": 10**29}}}]}, 400),
        ("GET", "presets/ok/chat/completions", None, 405),
    ],
)
def test_bad_input_is_a_400_and_saves_nothing(gateway, method, path, body, status):
    bundle = make_key()
    create(gateway, bundle, "helper", {"model": MODEL})
    response = api(gateway, bundle, method, path, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == status
    assert PresetVersion.objects.count() == 1


def test_no_key_is_a_401(gateway):
    assert httpx.get(f"{gateway.api}/presets", timeout=30).status_code == 401
    assert httpx.post(f"{gateway.api}/presets/x/chat/completions", json={}, timeout=30).status_code == 401


def test_chat_through_a_preset_is_merged_and_charged(gateway, simulator):
    bundle = make_key(credits="5")
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    create(gateway, bundle, "terse", {
        "model": MODEL, "temperature": 0.25, "max_tokens": 7, "provider": {"only": ["openai"]}, "tools": [tool],
        "messages": [{"role": "system", "content": "You are terse."}],
    })
    costs = []
    response = chat(gateway, bundle, {"model": "@preset/terse"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["provider"] == "OpenAI"
    sent = sent_to(simulator, "openai")
    assert sent["temperature"] == 0.25 and sent["max_tokens"] == 7
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup"]
    endpoint = next(e for e in endpoints_of(MODEL) if e.provider.slug == "openai")
    usage = body["usage"]
    costs.append(tokens_cost(usage["prompt_tokens"], endpoint.price_prompt)
                 + tokens_cost(usage["completion_tokens"], endpoint.price_completion))
    assert usage["completion_tokens"] <= 7

    # request fields override; "preset" as a field; the request's own model before @preset
    response = chat(gateway, bundle, {"preset": "terse", "temperature": 1.5, "tools": [
        {"type": "function", "function": {"name": "lookup", "description": "mine", "parameters": {"type": "object"}}}]})
    assert response.status_code == 200, response.text
    sent = sent_to(simulator, "openai")
    assert sent["temperature"] == 1.5 and sent["tools"][0]["function"]["description"] == "mine" and len(sent["tools"]) == 1
    usage = response.json()["usage"]
    costs.append(tokens_cost(usage["prompt_tokens"], endpoint.price_prompt)
                 + tokens_cost(usage["completion_tokens"], endpoint.price_completion))
    response = chat(gateway, bundle, {"model": "openai/gpt-4o@preset/terse"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "openai/gpt-4o"
    costs.append(round(response.json()["usage"]["cost"] * 10**9))

    # a new version is used at once (the gateway's cached copy is invalidated)
    create(gateway, bundle, "terse", {"model": MODEL, "temperature": 0.75, "provider": {"only": ["openai"]}})
    response = chat(gateway, bundle, {"model": "@preset/terse"})
    assert response.status_code == 200, response.text
    sent = sent_to(simulator, "openai")
    assert sent["temperature"] == 0.75 and "tools" not in sent and sent["messages"][0]["role"] == "user"
    costs.append(round(response.json()["usage"]["cost"] * 10**9))

    for bad, status in (({"model": "@preset/missing"}, 404), ({"preset": 7}, 400), ({"model": "@preset/NO!"}, 400)):
        response = chat(gateway, bundle, bad)
        assert response.status_code == status, response.text
    settlement_flush()
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 5 * 10**9 - sum(costs)
    assert ledger_sum(account_id=bundle.account.id) == bundle.account.balance


def test_streaming_and_embeddings_through_a_preset(gateway, simulator):
    bundle = make_key(credits="5")
    create(gateway, bundle, "vectors", {"model": "openai/text-embedding-3-small", "provider": {"sort": "price"}})
    response = httpx.post(f"{gateway.api}/embeddings", headers=bundle.headers, timeout=30,
                          json={"model": "@preset/vectors", "input": "hello", "encoding_format": "float"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "openai/text-embedding-3-small"
    create(gateway, bundle, "streamer", {"model": MODEL, "provider": {"only": ["openai"]},
                                         "messages": [{"role": "system", "content": "Sys."}]})
    with httpx.stream("POST", f"{gateway.api}/chat/completions", headers=bundle.headers, timeout=30,
                      json={"model": "@preset/streamer", "stream": True, "max_tokens": 5,
                            "messages": [{"role": "user", "content": "hi"}]}) as stream:
        assert stream.status_code == 200
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert sent_to(simulator, "openai")["messages"][0] == {"role": "system", "content": "Sys."}
