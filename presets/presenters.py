"""Presets as the API shows them (``#Preset``, ``#PresetDesignatedVersion``, ``#PresetWithDesignatedVersion``)."""

from __future__ import annotations

import datetime as dt

from .models import Preset, PresetVersion


def _time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _user_id(user) -> str | None:
    return f"user_{user.pk}" if user is not None else None


def version_dict(version: PresetVersion) -> dict:
    return {
        "id": str(version.id),
        "preset_id": str(version.preset_id),
        "version": version.version,
        "system_prompt": version.system_prompt,
        "config": version.config,
        "creator_id": _user_id(version.creator) or "",
        "created_at": _time(version.created_at),
        "updated_at": _time(version.updated_at),
    }


def preset_dict(preset: Preset) -> dict:
    return {
        "id": str(preset.id),
        "slug": preset.slug,
        "name": preset.name,
        "description": preset.description or None,
        "status": preset.status,
        "status_updated_at": _time(preset.status_updated_at),
        "designated_version_id": str(preset.designated_version_id) if preset.designated_version_id else None,
        "creator_user_id": _user_id(preset.creator),
        "workspace_id": None,
        "created_at": _time(preset.created_at),
        "updated_at": _time(preset.updated_at),
    }


def preset_with_version_dict(preset: Preset) -> dict:
    version = preset.designated_version
    return {**preset_dict(preset), "designated_version": version_dict(version) if version is not None else None}
