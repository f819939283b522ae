"""routing.catalog_cache: concurrent misses share one build of the snapshot, and a build that races an
invalidation is not kept."""

from __future__ import annotations

import asyncio
import dataclasses
import time

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
    original = catalog_cache.snapshots.load
    built: list = []
    loop_of_test: list = []

    def racing(key):
        snapshot = original(key)
        built.append(snapshot)
        if len(built) == 1:  # e.g. a catalog change landed while this build read the old rows
            loop_of_test[0].call_soon_threadsafe(catalog_cache.invalidate)
            time.sleep(0.2)  # the invalidation runs on the loop before this build is handed back
        return snapshot

    monkeypatch.setattr(catalog_cache.snapshots, "load", racing)

    async def main():
        loop_of_test.append(asyncio.get_running_loop())
        first = await catalog_cache.catalog()
        return first, await catalog_cache.catalog()

    first, second = asyncio.run(main())
    assert first is built[0]  # the request that asked before the change gets what was read
    assert len(built) == 2 and second is built[1]  # but the next one builds again


def test_unknown_model_ids_at_once_rebuild_once(catalog):
    async def main():
        await catalog_cache.catalog()
        held = catalog_cache.snapshots.entries[catalog_cache.SNAPSHOT]
        # Older than two seconds: a lookup that misses may rebuild, but fifty at once rebuild once.
        catalog_cache.snapshots.entries[catalog_cache.SNAPSHOT] = (held[0], dataclasses.replace(held[1], built_at=0.0))
        before = catalog_cache.builds.loads
        found = await asyncio.gather(*(catalog_cache.model_lookup(f"nobody/model-{n}") for n in range(50)))
        return found, catalog_cache.builds.loads - before

    found, builds = asyncio.run(main())
    assert found == [None] * 50
    assert builds == 1
