"""``context-compression`` with the ``middle-out`` engine (legacy: ``transforms: ["middle-out"]``).

LLMs attend least to the middle of a long prompt, so that is what goes first.
``compress_middle_out`` works in three steps, never touching the caller's list:

1. **Message count.** Over ``max_messages`` (Anthropic: 1000), it keeps half of the
   allowed messages from the start and half from the end and drops the middle.
2. **Tokens.** While the prompt is over ``max_prompt_tokens`` it takes the removable
   message nearest the middle. When removing it would cut much more than needed
   (it is longer than the excess by at least ``MIN_TRUNCATED_TOKENS``) and shortening
   its text in the middle is enough, it is shortened and the work is done; otherwise
   it is removed.
3. **Last resort.** If only protected messages are left and the prompt is still too
   long, their text is shortened in the middle, longest first.

Protected (never removed, only shortened in step 3): system and developer
messages, the last user message, and the final message. An assistant message with
``tool_calls`` and the ``tool`` results that follow it are removed together, so a
provider never sees a tool result without its call.

Tokens are counted as ``routing.tokens.estimate_tokens`` does (words and
punctuation), plus the per-message overhead and a flat cost per image or file part.
The result may still be over the budget when the protected overhead alone is; the
caller then answers with its usual context-length error.
"""

from __future__ import annotations

import orjson

from routing.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, REPLY_OVERHEAD, WORDS, estimate_tokens

from . import find_plugin, plugin_enabled

ENGINE = "middle-out"
# Endpoints with at most this much context compress by default (OpenRouter's rule).
DEFAULT_ON_CONTEXT = 8192
MIN_TRUNCATED_TOKENS = 32
MARKER = "\n…\n"  # one token under estimate_tokens
PROTECTED_ROLES = frozenset({"system", "developer"})


def compression_wanted(body: dict, *, context_length: int) -> bool:
    """Whether to compress: the plugin or the legacy ``transforms`` decide, else small contexts do."""
    entry = find_plugin(body.get("plugins"), "context-compression")
    if entry is not None:
        return plugin_enabled(entry)
    transforms = body.get("transforms")
    if isinstance(transforms, list):
        return ENGINE in transforms
    return context_length <= DEFAULT_ON_CONTEXT


def _text_tokens(content) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                total += estimate_tokens(part["text"])
            elif part.get("type") not in (None, "text"):
                total += IMAGE_TOKENS
    return total


def message_tokens(message: dict) -> int:
    total = MESSAGE_OVERHEAD + _text_tokens(message.get("content"))
    if message.get("tool_calls"):
        total += estimate_tokens(orjson.dumps(message["tool_calls"]).decode())
    return total


def prompt_tokens(messages: list[dict]) -> int:
    return REPLY_OVERHEAD + sum(message_tokens(m) for m in messages if isinstance(m, dict))


def truncate_middle(text: str, keep_tokens: int) -> str:
    """``text`` cut to about ``keep_tokens`` tokens: its head and tail, with a marker between."""
    spans = list(WORDS.finditer(text))
    if len(spans) <= keep_tokens:
        return text
    keep = max(keep_tokens - 1, 0)  # the marker is a token
    head = (keep + 1) // 2
    tail = keep - head
    start = text[: spans[head - 1].end()] if head else ""
    end = text[spans[len(spans) - tail].start() :] if tail else ""
    return start + MARKER + end


def _shorten(message: dict, by_tokens: int) -> dict | None:
    """A copy of ``message`` with its longest text about ``by_tokens`` tokens shorter; None if it has no text."""
    content = message.get("content")
    if isinstance(content, str):
        tokens = estimate_tokens(content)
        return {**message, "content": truncate_middle(content, max(tokens - by_tokens, 0))}
    if not isinstance(content, list):
        return None
    texts = [(estimate_tokens(p["text"]), i) for i, p in enumerate(content) if isinstance(p, dict) and isinstance(p.get("text"), str)]
    if not texts:
        return None
    tokens, index = max(texts)
    parts = list(content)
    parts[index] = {**parts[index], "text": truncate_middle(parts[index]["text"], max(tokens - by_tokens, 0))}
    return {**message, "content": parts}


def _units(messages: list[dict]) -> list[list[int]]:
    """Indices grouped so that an assistant's tool calls stay with their results."""
    units: list[list[int]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool" and units and _opens_tool_calls(messages[units[-1][0]]):
            units[-1].append(index)
        else:
            units.append([index])
    return units


def _opens_tool_calls(message) -> bool:
    return isinstance(message, dict) and message.get("role") == "assistant" and bool(message.get("tool_calls"))


def _protected(messages: list[dict]) -> set[int]:
    protected = {i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") in PROTECTED_ROLES}
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if users:
        protected.add(users[-1])
    if messages:
        protected.add(len(messages) - 1)
    return protected


def compress_middle_out(
    messages: list[dict], *, max_prompt_tokens: int, max_messages: int | None = None
) -> tuple[list[dict], int]:
    """Fit ``messages`` into ``max_prompt_tokens`` (and ``max_messages``); returns (messages, how many removed)."""
    current = list(messages)
    removed = 0

    # 1. Too many messages: keep half of what is allowed from each end.
    if max_messages is not None and len(current) > max_messages:
        protected = _protected(current)
        removable = [u for u in _units(current) if not protected.intersection(u)]
        room = max(max_messages - (len(current) - sum(len(u) for u in removable)), 0)
        head_room = (room + 1) // 2
        tail_room = room - head_room
        keep: set[int] = set()
        used = 0
        for unit in removable:
            if used + len(unit) > head_room:
                break
            keep.update(unit)
            used += len(unit)
        used = 0
        for unit in reversed(removable):
            if used + len(unit) > tail_room or keep.intersection(unit):
                break
            keep.update(unit)
            used += len(unit)
        drop = {i for unit in removable for i in unit if i not in keep}
        current = [m for i, m in enumerate(current) if i not in drop]
        removed += len(drop)

    # 2. Too many tokens: remove (or shorten) from the middle.
    sizes = [message_tokens(m) if isinstance(m, dict) else 0 for m in current]
    total = REPLY_OVERHEAD + sum(sizes)
    while total > max_prompt_tokens:
        protected = _protected(current)
        removable = [u for u in _units(current) if not protected.intersection(u)]
        if not removable:
            break
        unit = removable[len(removable) // 2]
        excess = total - max_prompt_tokens
        if len(unit) == 1 and sizes[unit[0]] - excess >= MIN_TRUNCATED_TOKENS + MESSAGE_OVERHEAD:
            shorter = _shorten(current[unit[0]], excess)
            new_size = message_tokens(shorter) if shorter is not None else sizes[unit[0]]
            if total - sizes[unit[0]] + new_size <= max_prompt_tokens:  # shortening is enough
                current[unit[0]] = shorter
                total += new_size - sizes[unit[0]]
                sizes[unit[0]] = new_size
                continue
        total -= sum(sizes[i] for i in unit)
        current = [m for i, m in enumerate(current) if i not in unit]
        sizes = [s for i, s in enumerate(sizes) if i not in unit]
        removed += len(unit)

    # 3. Only protected messages left: shorten them, longest first.
    if total > max_prompt_tokens:
        for index in sorted(range(len(current)), key=lambda i: -sizes[i]):
            excess = total - max_prompt_tokens
            if excess <= 0:
                break
            shorter = _shorten(current[index], excess) if isinstance(current[index], dict) else None
            if shorter is None:
                continue
            current[index] = shorter
            new_size = message_tokens(shorter)
            total += new_size - sizes[index]
            sizes[index] = new_size
    return current, removed
