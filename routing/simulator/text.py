"""Deterministic reply text.

A reply is a tuple of tokens derived only from a seed (a hash of provider, model and prompt
text) and a length, so the same request always gets the same answer. Tokens are ASCII words
(the first one bare, later ones with a leading space) and single punctuation marks, chosen so
that ``count_tokens("".join(tokens)) == len(tokens)`` and each token is at least one byte.
A shorter reply is always a prefix of a longer one for the same seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import lru_cache
from typing import Any

WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is that it for on with as was be by this are from at or an have not
    they which one you had but all were we can there been if more when will would who so no
    model token route provider stream answer request latency signal vector context window
    prompt reply gateway cache budget credit usage simulate balance fallback quick steady
    bright quiet river mountain forest ocean desert valley garden meadow harbor island city
    village bridge tower castle market station library museum theater school office kitchen
    window door table chair lamp book paper letter story poem song music picture color light
    shadow morning evening night summer winter spring autumn rain snow wind cloud storm sun
    moon star planet earth fire water stone metal glass wood silver golden green blue red
    white black small large gentle brave clever simple careful curious patient happy calm
    swift slow early late near far open close begin finish build carry follow gather listen
    measure notice offer reach share travel wander write read speak think learn teach grow
    """.split()
)
MIN_NATURAL_TOKENS = 8
MAX_NATURAL_TOKENS = 40
SIM_TOKENS_RE = re.compile(r"\[sim:tokens=(\d{1,7})\]")


def seed_for(*parts: str) -> int:
    """A stable 64-bit seed for the given strings (independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "big")


def natural_length(seed: int) -> int:
    """The reply length used when nothing forces one: 8..40 tokens."""
    span = MAX_NATURAL_TOKENS - MIN_NATURAL_TOKENS + 1
    return MIN_NATURAL_TOKENS + (seed >> 7) % span


def forced_length(text: str) -> int | None:
    """N from a ``[sim:tokens=N]`` control in ``text``, if present."""
    match = SIM_TOKENS_RE.search(text)
    return int(match.group(1)) if match else None


CACHED_MAX_TOKENS = 4096  # longer replies are not cached (memory)


def generate_tokens(seed: int, count: int) -> tuple[str, ...]:
    """``count`` tokens of sentence-like text; the last one is a full stop when possible."""
    if count <= CACHED_MAX_TOKENS:
        return _cached_tokens(seed, count)
    return _generate(seed, count)


def _generate(seed: int, count: int) -> tuple[str, ...]:
    rng = random.Random(seed)
    choice = rng.choice
    draw = rng.random
    tokens: list[str] = []
    append = tokens.append
    capitalize = True
    since_punct = 0
    for index in range(count):
        last = index == count - 1
        if since_punct and (last or (since_punct >= 3 and draw() < 0.2)):
            mark = "." if last or draw() < 0.6 else ","
            append(mark)
            capitalize = mark == "."
            since_punct = 0
            continue
        word = choice(WORDS)
        if capitalize:
            word = word.capitalize()
            capitalize = False
        append(word if index == 0 else " " + word)
        since_punct += 1
    return tuple(tokens)


_cached_tokens = lru_cache(maxsize=8192)(_generate)


SIM_TOOL_RE = re.compile(r"\[sim:tool=([A-Za-z0-9_.:-]{1,64})\]")


def forced_tool(text: str) -> str | None:
    """NAME from a ``[sim:tool=NAME]`` control in ``text``: the reply calls that tool."""
    match = SIM_TOOL_RE.search(text)
    return match.group(1) if match else None


def tool_arguments(seed: int, schema: Any) -> dict[str, Any]:
    """Deterministic arguments that fit a JSON Schema object (enums, types, nesting)."""
    value = _schema_value(random.Random(seed), schema if isinstance(schema, dict) else {}, 0)
    return value if isinstance(value, dict) else {}


def _schema_value(rng: random.Random, schema: dict[str, Any], depth: int) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return rng.choice(enum)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") if depth < 4 else None
        if not isinstance(properties, dict):
            return {}
        return {
            name: _schema_value(rng, sub if isinstance(sub, dict) else {}, depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        return [_schema_value(rng, items if isinstance(items, dict) else {}, depth + 1)] if depth < 4 else []
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return rng.choice(WORDS)
