"""The ``web`` plugin (and the ``:online`` variant): search, put the results in the prompt, cite them.

One request:
  ``web_options(plugin)`` -> ``search_query(messages)`` (the last user message's text)
  -> ``backend.search(...)`` -> ``inject_results(messages, results, date=...)`` -> the model answers
  -> ``annotations_for(answer, results)`` -> charge ``backend.price_nanos(len(results))``.

Backends: ``ExaSearchBackend`` (``POST https://api.exa.ai/search``) when ``EXA_API_KEY`` is set,
else ``SimulatedSearchBackend``, whose results are derived from the query alone so that
development and tests are deterministic and offline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import orjson
from django.conf import settings

from billing.money import usd_to_nanos
from openrouter_site.errors import BadRequest

DEFAULT_MAX_RESULTS = 5
MAX_RESULTS = 25
CONTENT_CHARS = 1500
DEFAULT_SEARCH_PROMPT = (
    "A web search was conducted on `{date}`. Incorporate the following web search results into your response. "
    "IMPORTANT: Cite them using markdown links named using the domain of the source. "
    "Example: [nytimes.com](https://nytimes.com/some-page)."
)
EXA_SEARCH_URL = "https://api.exa.ai/search"
# Prices per request (USD). Exa: $0.007 including 10 results, then $0.001 per extra result.
EXA_BASE_PRICE = usd_to_nanos("0.007")
EXA_INCLUDED_RESULTS = 10
EXA_EXTRA_RESULT_PRICE = usd_to_nanos("0.001")
SIMULATED_PRICE = usd_to_nanos("0.005")


class SearchError(Exception):
    """The search engine failed; the gateway decides whether to answer without results."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    url: str
    title: str
    content: str


@dataclass(frozen=True, slots=True)
class WebOptions:
    engine: str | None
    max_results: int
    search_prompt: str | None
    include_domains: tuple[str, ...]
    exclude_domains: tuple[str, ...]


class SearchBackend(Protocol):
    name: str

    async def search(
        self, query: str, *, max_results: int, include_domains: tuple[str, ...] = (), exclude_domains: tuple[str, ...] = ()
    ) -> list[SearchResult]: ...

    def price_nanos(self, result_count: int) -> int: ...


# --- options -------------------------------------------------------------------------------


def _domains(plugin: dict, name: str) -> tuple[str, ...]:
    value = plugin.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(d, str) and d.strip() for d in value):
        raise BadRequest(f"'plugins[web].{name}' must be an array of domain names")
    return tuple(_host(d.strip()) or d.strip().lower() for d in value)


def web_options(plugin: dict) -> WebOptions:
    """Validate a ``{id: "web", ...}`` entry (``{}`` for ``:online``)."""
    max_results = plugin.get("max_results", DEFAULT_MAX_RESULTS)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise BadRequest(f"'plugins[web].max_results' must be an integer from 1 to {MAX_RESULTS}")
    prompt = plugin.get("search_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadRequest("'plugins[web].search_prompt' must be a string")
    engine = plugin.get("engine")
    if engine is not None and not isinstance(engine, str):
        raise BadRequest("'plugins[web].engine' must be a string")
    return WebOptions(
        engine=engine,
        max_results=max_results,
        search_prompt=prompt,
        include_domains=_domains(plugin, "include_domains"),
        exclude_domains=_domains(plugin, "exclude_domains"),
    )


def search_query(messages: list[dict]) -> str:
    """The text of the last user message ('' when it has none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content.strip()
            if isinstance(content, list):
                texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
                return "\n".join(texts).strip()
            return ""
    return ""


# --- backends ----------------------------------------------------------------------------------

_STOP_WORDS = frozenset("a an and are as at be by for from how in is it of on or the to was what when where which who why with".split())


class SimulatedSearchBackend:
    """Results made from the query: the same query always gets the same pages."""

    name = "simulated"
    DOMAINS = ("en.wikipedia.org", "www.reuters.com", "arxiv.org", "github.com", "www.nature.com", "docs.python.org",
               "www.bbc.co.uk", "stackoverflow.com", "www.nytimes.com", "developer.mozilla.org")

    async def search(
        self, query: str, *, max_results: int, include_domains: tuple[str, ...] = (), exclude_domains: tuple[str, ...] = ()
    ) -> list[SearchResult]:
        words = [w for w in re.findall(r"[a-z0-9]+", query.lower()) if w not in _STOP_WORDS] or ["search"]
        slug = "-".join(words[:6])
        topic = " ".join(words[:6])
        domains = [d for d in (include_domains or self.DOMAINS) if not _domain_matches(d, exclude_domains)]
        if not domains:
            return []
        results = []
        for index in range(max_results):
            digest = hashlib.sha256(f"{index}:{query}".encode()).hexdigest()
            domain = domains[(int(digest[:8], 16) + index) % len(domains)]
            results.append(
                SearchResult(
                    url=f"https://{domain}/{slug}-{digest[8:14]}",
                    title=f"{topic.title()} — {domain} ({index + 1})",
                    content=f"Simulated result {index + 1} for “{query.strip()[:200]}” from {domain}: "
                    f"an overview of {topic}, with background, recent developments and references.",
                )
            )
        return results

    def price_nanos(self, result_count: int) -> int:
        return SIMULATED_PRICE


class ExaSearchBackend:
    """Exa's search API: ``POST /search`` with ``x-api-key``; page text comes back with the hits."""

    name = "exa"

    def __init__(self, api_key: str, *, url: str = EXA_SEARCH_URL, timeout: float = 10.0) -> None:
        self.api_key = api_key
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ExaSearchBackend(url={self.url!r})"  # never the key

    def request_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "Content-Type": "application/json", "Accept": "application/json"}

    @staticmethod
    def request_body(
        query: str, *, max_results: int, include_domains: tuple[str, ...] = (), exclude_domains: tuple[str, ...] = ()
    ) -> dict:
        body: dict = {
            "query": query,
            "type": "auto",
            "numResults": max_results,
            "contents": {"text": {"maxCharacters": CONTENT_CHARS}},
        }
        if include_domains:
            body["includeDomains"] = list(include_domains)
        if exclude_domains:
            body["excludeDomains"] = list(exclude_domains)
        return body

    @staticmethod
    def parse_response(payload: object) -> list[SearchResult]:
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise SearchError("Exa returned an unexpected response")
        results = []
        for hit in payload["results"]:
            if not isinstance(hit, dict) or not isinstance(hit.get("url"), str) or not hit["url"]:
                continue
            content = hit.get("text") or hit.get("summary") or " ".join(hit.get("highlights") or []) or ""
            title = hit.get("title") if isinstance(hit.get("title"), str) and hit.get("title") else _host(hit["url"])
            results.append(SearchResult(url=hit["url"], title=title.strip(), content=str(content).strip()[:CONTENT_CHARS]))
        return results

    async def search(
        self, query: str, *, max_results: int, include_domains: tuple[str, ...] = (), exclude_domains: tuple[str, ...] = ()
    ) -> list[SearchResult]:
        from routing import upstream

        body = orjson.dumps(self.request_body(
            query, max_results=max_results, include_domains=include_domains, exclude_domains=exclude_domains
        ))
        try:
            async with asyncio.timeout(self.timeout):
                response = await upstream.send(self.url, self.request_headers(), body, read_timeout=self.timeout)
                try:
                    payload = await response.read()
                finally:
                    response.release()
            if response.status != 200:
                raise SearchError(f"Exa returned HTTP {response.status}")
        except (upstream.UpstreamError, TimeoutError) as exc:
            raise SearchError(f"Exa request failed: {type(exc).__name__}") from None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise SearchError("Exa returned invalid JSON") from None
        return self.parse_response(data)[:max_results]

    def price_nanos(self, result_count: int) -> int:
        return EXA_BASE_PRICE + max(result_count - EXA_INCLUDED_RESULTS, 0) * EXA_EXTRA_RESULT_PRICE


def backend_for_settings() -> SearchBackend:
    api_key = getattr(settings, "EXA_API_KEY", "")
    if api_key:
        return ExaSearchBackend(api_key, timeout=getattr(settings, "WEB_SEARCH_TIMEOUT_SECONDS", 10.0))
    return SimulatedSearchBackend()


# --- the prompt and the citations ------------------------------------------------------------


def format_results(results: list[SearchResult]) -> str:
    blocks = [f"[{i}] {r.title}\nURL: {r.url}\n{r.content}" for i, r in enumerate(results, start=1)]
    return "\n\n".join(blocks)


def inject_results(
    messages: list[dict],
    results: list[SearchResult],
    *,
    search_prompt: str | None = None,
    date: dt.date | str,
    role: str = "system",
) -> list[dict]:
    """A new message list with the prompt and results as one message right before the last user message.

    ``search_prompt`` may contain ``{date}``; the default one does. No results, no change.
    """
    if not results:
        return list(messages)
    day = date.isoformat() if isinstance(date, dt.date) else str(date)
    if isinstance(date, dt.datetime):
        day = date.date().isoformat()
    prompt = (search_prompt or DEFAULT_SEARCH_PROMPT).replace("{date}", day)
    message = {"role": role, "content": f"{prompt}\n\n{format_results(results)}"}
    out = list(messages)
    users = [i for i, m in enumerate(out) if isinstance(m, dict) and m.get("role") == "user"]
    out.insert(users[-1] if users else len(out), message)
    return out


_MARKDOWN_LINK = re.compile(r"\[([^\]\n]{1,300})\]\((https?://[^\s)]+)\)")
_BARE_URL = re.compile(r"(?<![(\w])https?://[^\s)\]>\"']+")


def _host(url: str) -> str:
    try:
        host = urlsplit(url if "://" in url else f"https://{url}").hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def _domain_matches(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().removeprefix("www.")
    return any(host == d or host.endswith("." + d) for d in domains)


def _normal_url(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").lower().replace("://www.", "://")


def _match(url: str, label: str, results: list[SearchResult]) -> SearchResult | None:
    wanted = _normal_url(url)
    for result in results:
        if _normal_url(result.url) == wanted:
            return result
    host = _host(url)
    label_host = label.strip().lower().removeprefix("www.")
    for result in results:
        result_host = _host(result.url)
        if result_host and (result_host == host or result_host == label_host):
            return result
    return None


def annotations_for(text: str, results: list[SearchResult]) -> list[dict]:
    """``url_citation`` annotations for the links in ``text`` that point at a result (by URL or domain).

    Markdown links span from ``[`` to ``)``; bare URLs span the URL. Indices are into ``text``.
    """
    if not text or not results:
        return []
    found: list[tuple[int, int, str, SearchResult]] = []
    for link in _MARKDOWN_LINK.finditer(text):
        result = _match(link.group(2), link.group(1), results)
        if result is not None:
            found.append((link.start(), link.end(), link.group(2), result))
    for bare in _BARE_URL.finditer(text):
        url = bare.group(0).rstrip(".,;:!?")
        if any(start <= bare.start() < end for start, end, _, _ in found):
            continue
        result = _match(url, "", results)
        if result is not None:
            found.append((bare.start(), bare.start() + len(url), url, result))
    found.sort(key=lambda item: item[0])
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "url": result.url,
                "title": result.title,
                "content": result.content,
                "start_index": start,
                "end_index": end,
            },
        }
        for start, end, _url, result in found
    ]
