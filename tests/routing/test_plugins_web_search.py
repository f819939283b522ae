"""The web plugin (routing.plugins.web_search): options, backends, the prompt, citations, prices."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from billing.money import usd_to_nanos
from openrouter_site.errors import BadRequest
from routing import upstream
from routing.plugins.web_search import (
    DEFAULT_SEARCH_PROMPT,
    ExaSearchBackend,
    SearchError,
    SearchResult,
    SimulatedSearchBackend,
    annotations_for,
    backend_for_settings,
    inject_results,
    search_query,
    web_options,
)

# The shape of a real answer from POST https://api.exa.ai/search with text contents.
EXA_RESPONSE = {
    "requestId": "b5947044c4b78efa9552a7c89b306d95",
    "resolvedSearchType": "neural",
    "results": [
        {
            "id": "https://www.nature.com/articles/d41586-024-00001-1",
            "title": "Fusion record: reactor sustains plasma for 48 seconds",
            "url": "https://www.nature.com/articles/d41586-024-00001-1",
            "publishedDate": "2024-03-01T00:00:00.000Z",
            "author": "A. Writer",
            "score": 0.41,
            "text": "Korea's KSTAR tokamak kept a 100-million-degree plasma stable for 48 seconds...",
        },
        {
            "id": "https://arxiv.org/abs/2401.00001",
            "title": "",
            "url": "https://arxiv.org/abs/2401.00001",
            "publishedDate": None,
            "author": None,
            "highlights": ["We report sustained H-mode operation.", "Confinement improved by 20%."],
        },
        {"id": "broken", "title": "No URL here"},
    ],
    "costDollars": {"total": 0.005},
}

RESULTS = [
    SearchResult("https://www.nytimes.com/2024/05/01/science/fusion.html", "Fusion advances", "Fusion text."),
    SearchResult("https://en.wikipedia.org/wiki/Nuclear_fusion", "Nuclear fusion", "Wiki text."),
]


def test_options_defaults_and_validation():
    assert web_options({"id": "web"}) == web_options({})
    options = web_options({"id": "web", "max_results": 3, "include_domains": ["www.Nature.com", "arxiv.org"],
                           "exclude_domains": ["reddit.com"], "search_prompt": "Results ({date}):", "engine": "exa"})
    assert options.max_results == 3
    assert options.include_domains == ("nature.com", "arxiv.org")
    assert options.exclude_domains == ("reddit.com",)
    assert options.search_prompt == "Results ({date}):" and options.engine == "exa"
    assert web_options({}).max_results == 5
    for bad in ({"max_results": 0}, {"max_results": "5"}, {"max_results": True}, {"include_domains": "a.com"},
                {"exclude_domains": [""]}, {"search_prompt": 3}):
        with pytest.raises(BadRequest):
            web_options(bad)


def test_the_query_is_the_last_user_message():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": [{"type": "text", "text": "latest fusion"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "records"}]},
    ]
    assert search_query(messages) == "latest fusion\nrecords"
    assert search_query([{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "a"}]) == "hi"
    assert search_query([{"role": "system", "content": "x"}]) == ""


def test_simulated_results_are_deterministic_and_honour_domains():
    backend = SimulatedSearchBackend()
    first = asyncio.run(backend.search("Who won the 2024 Nobel prize in physics?", max_results=5))
    again = asyncio.run(backend.search("Who won the 2024 Nobel prize in physics?", max_results=5))
    other = asyncio.run(backend.search("Best pizza in Naples", max_results=5))
    assert first == again and len(first) == 5
    assert first != other
    assert all(r.url.startswith("https://") and "nobel" in r.url for r in first)
    only = asyncio.run(backend.search("q", max_results=3, include_domains=("example.org",)))
    assert {r.url.split("/")[2] for r in only} == {"example.org"}
    excluded = asyncio.run(backend.search("q", max_results=25, exclude_domains=("wikipedia.org", "github.com")))
    assert not any("wikipedia.org" in r.url or "github.com" in r.url for r in excluded)


def test_exa_request_building():
    body = ExaSearchBackend.request_body("fusion records", max_results=7, include_domains=("nature.com",),
                                         exclude_domains=("reddit.com",))
    assert body == {
        "query": "fusion records",
        "type": "auto",
        "numResults": 7,
        "contents": {"text": {"maxCharacters": 1500}},
        "includeDomains": ["nature.com"],
        "excludeDomains": ["reddit.com"],
    }
    assert "includeDomains" not in ExaSearchBackend.request_body("q", max_results=1)
    backend = ExaSearchBackend("exa-secret")
    assert backend.request_headers()["x-api-key"] == "exa-secret"
    assert backend.url == "https://api.exa.ai/search"
    assert "exa-secret" not in repr(backend)


def test_exa_response_parsing():
    results = ExaSearchBackend.parse_response(EXA_RESPONSE)
    assert results == [
        SearchResult(
            url="https://www.nature.com/articles/d41586-024-00001-1",
            title="Fusion record: reactor sustains plasma for 48 seconds",
            content="Korea's KSTAR tokamak kept a 100-million-degree plasma stable for 48 seconds...",
        ),
        SearchResult(
            url="https://arxiv.org/abs/2401.00001",
            title="arxiv.org",
            content="We report sustained H-mode operation. Confinement improved by 20%.",
        ),
    ]
    with pytest.raises(SearchError):
        ExaSearchBackend.parse_response({"error": "invalid api key"})


def test_backend_follows_the_setting(settings):
    settings.EXA_API_KEY = ""
    assert isinstance(backend_for_settings(), SimulatedSearchBackend)
    settings.EXA_API_KEY = "exa-key"
    backend = backend_for_settings()
    assert isinstance(backend, ExaSearchBackend) and backend.api_key == "exa-key"


def test_prices_in_nano_dollars():
    assert SimulatedSearchBackend().price_nanos(5) == usd_to_nanos("0.005")
    exa = ExaSearchBackend("k")
    assert exa.price_nanos(0) == exa.price_nanos(10) == usd_to_nanos("0.007")
    assert exa.price_nanos(11) == usd_to_nanos("0.008")
    assert exa.price_nanos(25) == usd_to_nanos("0.022")


def test_results_go_in_before_the_last_user_message():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "fusion news"},
    ]
    out = inject_results(messages, RESULTS, date=dt.date(2025, 3, 4))
    assert len(out) == 5 and out[3]["role"] == "system" and out[4] == messages[3]
    assert len(messages) == 4
    content = out[3]["content"]
    assert content.startswith(DEFAULT_SEARCH_PROMPT.replace("{date}", "2025-03-04"))
    assert "A web search was conducted on `2025-03-04`." in content
    assert "Example: [nytimes.com](https://nytimes.com/some-page)." in content
    assert "[1] Fusion advances\nURL: https://www.nytimes.com/2024/05/01/science/fusion.html\nFusion text." in content
    assert "[2] Nuclear fusion" in content


def test_custom_prompt_role_and_no_results():
    messages = [{"role": "user", "content": "q"}]
    out = inject_results(messages, RESULTS, search_prompt="Search of {date}:", date="2025-01-02", role="user")
    assert out[0]["role"] == "user" and out[0]["content"].startswith("Search of 2025-01-02:\n\n[1]")
    assert inject_results(messages, [], date="2025-01-02") == messages


def test_annotations_for_cited_links():
    text = (
        "Fusion moved on [nytimes.com](https://www.nytimes.com/2024/05/01/science/fusion.html). "
        "Background: [wikipedia.org](https://en.wikipedia.org/wiki/Fusion_power) and "
        "[example.com](https://example.com/x). See https://en.wikipedia.org/wiki/Nuclear_fusion."
    )
    notes = annotations_for(text, RESULTS)
    assert [n["url_citation"]["url"] for n in notes] == [RESULTS[0].url, RESULTS[1].url, RESULTS[1].url]
    first = notes[0]
    assert first["type"] == "url_citation"
    assert first["url_citation"]["title"] == "Fusion advances"
    assert first["url_citation"]["content"] == "Fusion text."
    span = text[first["url_citation"]["start_index"]:first["url_citation"]["end_index"]]
    assert span == "[nytimes.com](https://www.nytimes.com/2024/05/01/science/fusion.html)"
    bare = notes[2]["url_citation"]
    assert text[bare["start_index"]:bare["end_index"]] == "https://en.wikipedia.org/wiki/Nuclear_fusion"


def test_a_domain_named_link_matches_by_label():
    notes = annotations_for("As [nytimes.com](https://nytimes.com/some-page) says.", RESULTS)
    assert len(notes) == 1 and notes[0]["url_citation"]["url"] == RESULTS[0].url
    assert annotations_for("No links at all.", RESULTS) == []
    assert annotations_for("[a.com](https://a.com)", []) == []


def test_exa_search_over_http_against_a_local_stand_in():
    """The request really goes out (to a local server standing in for Exa) and the answer is parsed."""
    from aiohttp import web

    seen = []

    async def handler(request):
        body = await request.json()
        seen.append((request.headers.get("x-api-key"), body))
        if body["query"] == "fail":
            return web.json_response({"error": "bad"}, status=401)
        return web.json_response(EXA_RESPONSE)

    async def run():
        app = web.Application()
        app.router.add_post("/search", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            backend = ExaSearchBackend("exa-key", url=f"http://127.0.0.1:{port}/search")
            results = await backend.search("fusion", max_results=1, include_domains=("nature.com",))
            with pytest.raises(SearchError, match="HTTP 401"):
                await backend.search("fail", max_results=1)
            return results
        finally:
            await upstream.close()
            await runner.cleanup()

    results = asyncio.run(run())
    key, body = seen[0]
    assert key == "exa-key"
    assert body["includeDomains"] == ["nature.com"] and body["numResults"] == 1
    assert [r.url for r in results] == ["https://www.nature.com/articles/d41586-024-00001-1"]
