"""Request plugins (``plugins: [{id, enabled?, ...options}]``): pure transforms the gateway applies.

- ``compression``: ``context-compression`` (middle-out), and the legacy ``transforms``.
- ``file_parser``: ``file-parser`` (PDF text for models without native file input).
- ``web_search``: ``web`` (and the ``:online`` variant).
"""

from __future__ import annotations

from openrouter_site.errors import BadRequest


def find_plugin(plugins: object, plugin_id: str) -> dict | None:
    """The request's entry for ``plugin_id`` (even when ``enabled`` is false), or None.

    A malformed ``plugins`` value is a 400 naming the field.
    """
    if plugins is None:
        return None
    if not isinstance(plugins, list):
        raise BadRequest("'plugins' must be an array of objects")
    found = None
    for entry in plugins:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise BadRequest("each entry of 'plugins' must be an object with a string 'id'")
        if entry["id"] == plugin_id:
            found = entry  # the last one wins, as with repeated JSON keys
    return found


def plugin_enabled(entry: dict | None) -> bool:
    if entry is None:
        return False
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BadRequest(f"'plugins[{entry['id']}].enabled' must be a boolean")
    return enabled


def enabled_plugin(plugins: object, plugin_id: str) -> dict | None:
    """The options of ``plugin_id`` when the request turns it on, else None."""
    entry = find_plugin(plugins, plugin_id)
    return entry if plugin_enabled(entry) else None
