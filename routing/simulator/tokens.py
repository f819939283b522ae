"""Token counting shared by the simulator (and usable by the gateway's tests).

The tokenizer is deliberately simple: a token is a run of word characters or a single
non-space, non-word character. Every token therefore covers at least one character, and so at
least one UTF-8 byte, which gives the bound the gateway relies on::

    prompt_tokens <= utf8_bytes(all message text) + 4 * len(messages) + 3
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD = 4  # tokens added per chat message
REPLY_OVERHEAD = 3  # tokens added once per chat prompt (the assistant reply primer)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(TOKEN_RE.findall(text))


def content_text_parts(content: Any) -> list[str]:
    """The text parts of a chat message ``content`` (a string, a list of parts, or None)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return parts
    return []


def count_message_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: text tokens + 4 per message + 3."""
    total = REPLY_OVERHEAD
    for message in messages:
        total += MESSAGE_OVERHEAD
        for part in content_text_parts(message.get("content")):
            total += count_tokens(part)
    return total


def count_prompt_tokens(prompt: str | list[Any]) -> int:
    """Prompt tokens of a legacy completions ``prompt``.

    A string (or list of strings) is tokenized; a list of token ids counts one per id, and a
    list of such lists counts their total length.
    """
    if isinstance(prompt, str):
        return count_tokens(prompt)
    total = 0
    for item in prompt:
        if isinstance(item, str):
            total += count_tokens(item)
        elif isinstance(item, list):
            total += len(item)
        else:
            total += 1
    return total


_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")


def token_pieces(text: str) -> tuple[str, ...]:
    """``text`` cut into pieces of exactly one token each (leading spaces kept, so they join back)."""
    return tuple(_PIECE_RE.findall(text))
