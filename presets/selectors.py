"""Reads of presets, always scoped to an account (another account's slug is simply not found)."""

from __future__ import annotations

from django.db.models import Count

from .models import Preset, PresetVersion

MAX_VERSION = 2**31 - 1


def preset_list(*, account_id: int, offset: int = 0, limit: int = 50) -> tuple[list[Preset], int]:
    """An account's presets, most recently updated first, and how many there are."""
    queryset = Preset.objects.filter(account_id=account_id)
    total = queryset.count()
    rows = list(
        queryset.select_related("creator", "designated_version")
        .annotate(version_count=Count("versions"))
        .order_by("-updated_at", "slug")[offset : offset + limit]
    )
    return rows, total


def preset_get(*, account_id: int, slug: str) -> Preset | None:
    return (
        Preset.objects.filter(account_id=account_id, slug=slug)
        .select_related("creator", "designated_version", "designated_version__creator")
        .first()
    )


def preset_versions(*, preset: Preset, offset: int = 0, limit: int = 50) -> tuple[list[PresetVersion], int]:
    """A preset's versions, oldest first, and how many there are."""
    queryset = PresetVersion.objects.filter(preset=preset)
    return list(queryset.select_related("creator").order_by("version")[offset : offset + limit]), queryset.count()


def preset_version_get(*, preset: Preset, version: int) -> PresetVersion | None:
    if not 1 <= version <= MAX_VERSION:
        return None  # past the column: no such version (and no database error)
    return PresetVersion.objects.filter(preset=preset, version=version).select_related("creator").first()


def preset_designated_config(*, account_id: int, slug: str) -> tuple[int, str | None, dict] | None:
    """(version, system prompt, config) of an active preset's designated version, or None (the gateway's read)."""
    row = (
        Preset.objects.filter(account_id=account_id, slug=slug, status=Preset.Status.ACTIVE)
        .select_related("designated_version")
        .first()
    )
    if row is None or row.designated_version is None:
        return None
    version = row.designated_version
    return version.version, version.system_prompt, version.config
