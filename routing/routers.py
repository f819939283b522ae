"""Router model slugs: ``openrouter/auto`` and ``openrouter/free``.

``openrouter/auto`` classifies the request into one category with the rules below,
checked in this order (the first that holds wins), then returns the configured pool
for that category (``settings.AUTO_ROUTER_POOL``: category -> model slugs, best first)
filtered by the ``auto-router`` plugin's ``allowed_models`` / ``excluded_models`` globs.

1. ``vision``: a message has an image part (``image_url``, ``input_image`` or ``image``).
2. ``tool_use``: the request has a non-empty ``tools`` (or legacy ``functions``) list.
3. ``long_context``: the estimated prompt is over ``LONG_CONTEXT_TOKENS`` tokens.
4. ``code`` / ``maths``: the last user message is scored; each rule adds its weight
   once per distinct match, at most twice (see ``CODE_RULES`` and ``MATHS_RULES``). The
   higher score wins if it reaches ``MIN_SCORE``; a tie goes to code.
5. ``chat``: everything else.

``openrouter/free`` picks, at random, a free model that can serve the request: the
model is free (a ``:free`` id, or every endpoint free), has a free endpoint that takes
the request's parameters (``tools``; ``response_format`` for structured outputs), and
accepts images when the request has them. The rest of the eligible models follow in
random order as fallbacks.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from openrouter_site.errors import BadRequest, NotFound

from .plugins import enabled_plugin
from .tokens import estimate_prompt_tokens

AUTO_ROUTER = "openrouter/auto"
FREE_ROUTER = "openrouter/free"
CATEGORIES = ("code", "maths", "long_context", "vision", "tool_use", "chat")
LONG_CONTEXT_TOKENS = 24_000
MIN_SCORE = 2
IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
NO_MATCH = "No models match your request and model restrictions"

# (pattern, weight). A strong signal weighs 2, so one is enough; a keyword weighs 1 and needs company.
CODE_RULES: tuple[tuple[re.Pattern, int], ...] = (
    (re.compile(r"```"), 2),  # a fenced block
    (re.compile(r"Traceback \(most recent call last\)|\bat [\w.$]+\([\w.]+:\d+\)|\bSyntaxError\b|\bsegfault\b"), 2),
    (re.compile(r"^\s*(def|class|import|from \S+ import|#include|package|func|fn|public class)\b", re.M), 2),
    (re.compile(r"\bfunction\s+\w+\s*\(|\bconst\s+\w+\s*=|\w+\([^()]*\)\s*[{;]|\)\s*=>"), 2),
    (re.compile(r"\bSELECT\b.+\bFROM\b", re.S), 2),
    (re.compile(
        r"\b(python|javascript|typescript|java|golang|rust|c\+\+|c#|kotlin|swift|ruby|php|sql|bash|regex|html|css|"
        r"django|react|numpy|pandas|kubernetes|docker)\b", re.I), 1),
    (re.compile(
        r"\b(code|coding|program|function|method|class|script|compile[rsd]?|debug|bug|refactor|unit tests?|api|"
        r"library|repository|git|stack trace|exception|variable|algorithm)\b", re.I), 1),
)
MATHS_RULES: tuple[tuple[re.Pattern, int], ...] = (
    (re.compile(r"\\(frac|int|sum|sqrt|lim|prod|partial|cdot|infty)\b|\$[^$\n]*[\\^_=][^$\n]*\$"), 2),  # LaTeX
    (re.compile(r"\d\s*[-+*/^×÷]\s*\(?\d|\b\d+\s*[=<>≤≥]\s*\d|[∫∑√π∞≤≥±]"), 2),  # arithmetic and symbols
    (re.compile(r"\b(solve for|prove that|find the (value|derivative|integral|limit|probability))\b", re.I), 2),
    (re.compile(
        r"\b(math|maths|mathematics|equation|integral|derivative|calculus|algebra|geometry|theorem|proof|lemma|"
        r"matrix|matrices|eigen\w*|probability|statistics|polynomial|logarithm|factori[sz]e|prime|modulo|"
        r"calculate|compute)\b", re.I), 1),
)


# --- openrouter/auto ------------------------------------------------------------------------


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def has_images(body: dict) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES
        for message in _messages(body)
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def has_tools(body: dict) -> bool:
    return bool(body.get("tools")) or bool(body.get("functions"))


def _score(text: str, rules) -> int:
    """Each rule adds its weight once per distinct matching text, at most twice."""
    score = 0
    for pattern, weight in rules:
        hits = {match.group(0).lower() for match in pattern.finditer(text)}
        score += weight * min(len(hits), 2)
    return score


def classify(body: dict) -> str:
    """The request's category (one of ``CATEGORIES``) by the rules in the module docstring."""
    if has_images(body):
        return "vision"
    if has_tools(body):
        return "tool_use"
    if estimate_prompt_tokens(body) > LONG_CONTEXT_TOKENS:
        return "long_context"
    users = [m for m in _messages(body) if m.get("role") == "user"]
    text = _text(users[-1].get("content")) if users else ""
    code = _score(text, CODE_RULES)
    maths = _score(text, MATHS_RULES)
    if max(code, maths) >= MIN_SCORE:
        return "code" if code >= maths else "maths"
    return "chat"


@dataclass(frozen=True, slots=True)
class Restrictions:
    allowed: tuple[str, ...] = ()  # globs; empty = everything
    excluded: tuple[str, ...] = ()

    def permits(self, slug: str) -> bool:
        if self.allowed and not any(fnmatch.fnmatchcase(slug, p) for p in self.allowed):
            return False
        return not any(fnmatch.fnmatchcase(slug, p) for p in self.excluded)


def _patterns(entry: dict, name: str) -> tuple[str, ...]:
    value = entry.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise BadRequest(f"'plugins[auto-router].{name}' must be an array of model slugs or patterns")
    return tuple(p.strip() for p in value)


def auto_restrictions(body: dict) -> Restrictions:
    entry = enabled_plugin(body.get("plugins"), "auto-router")
    if entry is None:
        return Restrictions()
    return Restrictions(allowed=_patterns(entry, "allowed_models"), excluded=_patterns(entry, "excluded_models"))


def auto_route(
    body: dict, *, pool: Mapping[str, Sequence[str]] | None = None, available: Collection[str] | None = None
) -> tuple[str, list[str]]:
    """(category, model slugs in preference order) for ``openrouter/auto``; 404 when none is allowed.

    ``available`` (the catalog's slugs, when the caller has them) drops pool entries that are not
    in the catalog and lets ``allowed_models`` name models outside the pool: after the pool come the
    available models matching an allowed pattern, in the order of the patterns. Without it, only
    literal (non-glob) allowed slugs are added.
    """
    pool = settings.AUTO_ROUTER_POOL if pool is None else pool
    category = classify(body)
    restrictions = auto_restrictions(body)
    candidates = list(pool.get(category) or pool.get("chat") or ())
    for pattern in restrictions.allowed:
        if available is not None:
            candidates.extend(sorted(s for s in available if fnmatch.fnmatchcase(s, pattern)))
        elif not any(ch in pattern for ch in "*?["):
            candidates.append(pattern)
    models: list[str] = []
    for slug in candidates:
        if slug in models or slug.startswith("openrouter/") or not restrictions.permits(slug):
            continue
        if available is not None and slug not in available:
            continue
        models.append(slug)
    if not models:
        raise NotFound(NO_MATCH)
    return category, models


# --- openrouter/free --------------------------------------------------------------------------


class EndpointLike(Protocol):
    is_free: bool
    supported_parameters: Collection[str]


class ModelLike(Protocol):
    slug: str
    input_modalities: Collection[str]
    endpoints: Sequence[EndpointLike]


@dataclass(frozen=True, slots=True)
class Needs:
    vision: bool = False
    tools: bool = False
    structured_outputs: bool = False

    def parameters(self) -> frozenset[str]:
        wanted = set()
        if self.tools:
            wanted.add("tools")
        if self.structured_outputs:
            wanted.add("response_format")
        return frozenset(wanted)

    def describe(self) -> str:
        flags = (("vision", self.vision), ("tools", self.tools), ("structured outputs", self.structured_outputs))
        return ", ".join(name for name, on in flags if on) or "none"


def request_needs(body: dict) -> Needs:
    response_format = body.get("response_format")
    structured = isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")
    return Needs(vision=has_images(body), tools=has_tools(body), structured_outputs=structured)


def is_free_model(model: ModelLike) -> bool:
    if model.slug.startswith("openrouter/"):
        return False
    if model.slug.endswith(":free"):
        return True
    return bool(model.endpoints) and all(e.is_free for e in model.endpoints)


def serves(model: ModelLike, needs: Needs) -> bool:
    if needs.vision and "image" not in model.input_modalities:
        return False
    wanted = needs.parameters()
    return any(e.is_free and wanted <= set(e.supported_parameters) for e in model.endpoints)


def free_route(body: dict, candidates: Sequence[ModelLike], *, rng: random.Random | None = None) -> list[str]:
    """Free models that can serve ``body``, in random order (the first is the pick); 404 when none."""
    needs = request_needs(body)
    eligible = [m.slug for m in candidates if is_free_model(m) and serves(m, needs)]
    if not eligible:
        raise NotFound(f"No free models support this request (needs: {needs.describe()})")
    (rng or random).shuffle(eligible)
    return eligible
