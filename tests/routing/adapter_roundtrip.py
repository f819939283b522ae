"""Round trips of a provider adapter over real HTTP through the simulator (shared by the dialect tests)."""

from __future__ import annotations

import httpx

from routing.providers.base import ProviderAdapter
from tests.simulator_process import SimulatorProcess


def adapter_send(
    adapter: ProviderAdapter,
    sim: SimulatorProcess,
    body: dict,
    *,
    upstream_model: str,
    slug: str,
    api_key: str,
    stream: bool = False,
):
    """POST the adapter's request; returns the translated result (or chunks and translator) and the response."""
    upstream = adapter.request(
        body=body, upstream_model=upstream_model, base_url=sim.base_url(slug), api_key=api_key, stream=stream
    )
    with httpx.Client(timeout=10) as client:
        if not stream:
            response = client.post(upstream.url, content=upstream.body, headers=upstream.headers)
            if response.status_code != 200:
                return adapter.parse_error(response.status_code, response.content, response.headers), response
            return adapter.parse_response(response.content), response
        translator = adapter.stream_translator()
        chunks: list[dict] = []
        with client.stream("POST", upstream.url, content=upstream.body, headers=upstream.headers) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for data in response.iter_raw():
                chunks += translator.feed(data)
        return (chunks + translator.end(), translator), response
