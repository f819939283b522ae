"""Writes of presets: every edit is a new version, designated at once; the gateway's cached copy is
invalidated after the commit."""

from __future__ import annotations

import math

import orjson
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from openrouter_site.errors import ApiError, BadRequest
from routing.request_parsing import parse_chat

from . import cache
from .merge import CONFIG_FIELDS, PRESET_PREFIX, SLUG_RE
from .models import Preset, PresetVersion

MAX_CONFIG_BYTES = 256 * 1024
MAX_SYSTEM_PROMPT = 100_000
MAX_NAME = 200
MAX_DESCRIPTION = 2_000
PROBE_MESSAGES = [{"role": "user", "content": "x"}]
MAX_NUMBER = 2**53  # a number beyond it does not survive the database's JSON (a float may come back an int)


def _plain_numbers(value, depth: int = 0) -> bool:
    """Every number in ``value`` is finite and within ``MAX_NUMBER`` (so it round-trips through jsonb)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int | float):
        return math.isfinite(value) and abs(value) <= MAX_NUMBER
    if depth > 64:
        return False
    if isinstance(value, dict):
        return all(_plain_numbers(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_plain_numbers(v, depth + 1) for v in value)
    return False


def preset_config_check(*, slug: str, config: dict, system_prompt: str | None) -> None:
    """400 for anything a request could not carry: the config is validated as a chat request would be."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise BadRequest("A preset slug is 1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit")
    if not isinstance(config, dict):
        raise BadRequest("A preset's config must be an object")
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise BadRequest(f"A preset cannot hold {unknown[0]!r}; it holds: {', '.join(CONFIG_FIELDS)}")
    if isinstance(config.get("model"), str) and PRESET_PREFIX in config["model"]:
        raise BadRequest("A preset's 'model' cannot name a preset")
    if system_prompt is not None and (not isinstance(system_prompt, str) or len(system_prompt) > MAX_SYSTEM_PROMPT):
        raise BadRequest(f"The system prompt must be a string of at most {MAX_SYSTEM_PROMPT} characters")
    if not _plain_numbers(config):
        raise BadRequest(f"Numbers in a preset must be finite and at most {MAX_NUMBER} in size")
    encoded = orjson.dumps(config)
    if len(encoded) > MAX_CONFIG_BYTES:
        raise BadRequest(f"A preset's config is at most {MAX_CONFIG_BYTES} bytes")
    if b"\\u0000" in encoded or (system_prompt and "\x00" in system_prompt):
        raise BadRequest("A preset cannot contain NUL characters")
    parse_chat({"messages": PROBE_MESSAGES, **config}, "openrouter/auto")  # the request parser's own 400s


def preset_version_create(
    *, account, slug: str, config: dict, system_prompt: str | None, creator=None, name: str | None = None,
    description: str | None = None,
) -> Preset:
    """Create the preset (or add a version to it) and designate the new version."""
    preset_config_check(slug=slug, config=config, system_prompt=system_prompt)
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or "\x00" in name):
        raise BadRequest(f"A preset's name is 1-{MAX_NAME} characters")
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION
                                    or "\x00" in description):
        raise BadRequest(f"A preset's description is at most {MAX_DESCRIPTION} characters")
    for _ in range(3):
        try:
            with transaction.atomic():
                preset, created = Preset.objects.select_for_update().get_or_create(
                    account=account, slug=slug,
                    defaults={"name": (name or slug).strip(), "description": description or "", "creator": creator},
                )
                if not created:
                    if name is not None:
                        preset.name = name.strip()
                    if description is not None:
                        preset.description = description
                last = preset.versions.aggregate(last=Max("version"))["last"] or 0
                version = PresetVersion.objects.create(
                    preset=preset, version=last + 1, system_prompt=system_prompt or None, config=config, creator=creator
                )
                preset.designated_version = version
                preset.save()
                transaction.on_commit(lambda: cache.invalidate(account_id=account.id, slug=slug))
            preset.designated_version = version
            return preset
        except IntegrityError:
            continue  # a concurrent first version of the same slug: read it again
    raise ApiError("The preset was changed concurrently; try again", status=409)


def preset_status_update(*, preset: Preset, status: str) -> Preset:
    if status not in Preset.Status.values:
        raise BadRequest(f"status must be one of {', '.join(Preset.Status.values)}")
    with transaction.atomic():
        preset.status = status
        preset.status_updated_at = timezone.now()
        preset.save(update_fields=["status", "status_updated_at", "updated_at"])
        account_id, slug = preset.account_id, preset.slug
        transaction.on_commit(lambda: cache.invalidate(account_id=account_id, slug=slug))
    return preset
