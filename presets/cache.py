"""The gateway's view of presets: the designated version of ``(account, slug)``, cached in each process.

Only a request that names a preset reaches this (``merge.preset_reference`` reads the body first), so a
request without one never costs a lookup. A miss reads the database in a worker thread; every new
version or status change invalidates the entry at once here and, through Redis, in every other process
(``openrouter_site.process_cache``); entries also expire after ``GATEWAY_PRESET_CACHE_SECONDS``.
"""

from __future__ import annotations

from django.conf import settings

from openrouter_site.process_cache import InvalidatingCache

from .merge import PresetConfig


def _key(account_id: int, slug: str) -> str:
    return f"{account_id}:{slug}"


def _parse_key(text: str) -> str:
    account, _, slug = text.partition(":")
    if not account.isdigit() or not slug:
        raise ValueError(text)
    return text


def _load(key: str) -> PresetConfig | None:
    from .selectors import preset_designated_config

    account, _, slug = key.partition(":")
    found = preset_designated_config(account_id=int(account), slug=slug)
    if found is None:
        return None
    version, system_prompt, config = found
    return PresetConfig(slug=slug, version=version, system_prompt=system_prompt, config=config)


cache: InvalidatingCache[str, PresetConfig | None] = InvalidatingCache(
    name="presets",
    load=_load,
    ttl=lambda: settings.GATEWAY_PRESET_CACHE_SECONDS,
    parse_key=_parse_key,
)


async def preset_for(*, account_id: int, slug: str) -> PresetConfig | None:
    """The designated version of an account's active preset (shared: do not mutate its config)."""
    return await cache.get(_key(account_id, slug))


def invalidate(*, account_id: int, slug: str) -> None:
    cache.invalidate(_key(account_id, slug))


def clear() -> None:
    cache.clear()
