"""routing.catalog_cache: concurrent misses share one build of the snapshot, and a build that races an
invalidation is not kept."""

from __future__ import annotations

import asyncio

import pytest

from routing import catalog_cache

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_misses_share_one_build(catalog):
    before = catalog_cache.builds.loads

    async def burst():
        return await asyncio.gather(*(catalog_cache.catalog() for _ in range(50)))

    snapshots = asyncio.run(burst())
    assert catalog_cache.builds.loads - before == 1
    assert all(s is snapshots[0] for s in snapshots)
    assert "openai/gpt-4o-mini" in snapshots[0].models


def test_a_build_that_races_an_invalidation_is_not_kept(catalog, monkeypatch):
    original = catalog_cache._build_async
    built: list = []

    async def racing():
        snapshot = await original()
        built.append(snapshot)
        if len(built) == 1:
            catalog_cache.invalidate()  # e.g. a catalog change landed while this build read the old rows
        return snapshot

    monkeypatch.setattr(catalog_cache, "_build_async", racing)

    async def main():
        first = await catalog_cache.catalog()
        return first, await catalog_cache.catalog()

    first, second = asyncio.run(main())
    assert first is built[0]  # the request that asked before the change gets what was read
    assert len(built) == 2 and second is built[1]  # but the next one builds again
