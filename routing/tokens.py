"""Token estimates the gateway needs before (or without) a provider's count.

``prompt_tokens_upper_bound`` is a true upper bound for byte-level tokenizers
(every token is at least one byte), used to size credit holds. ``estimate_tokens``
is an ordinary approximation, used only when a provider cannot tell us (a stream
the client cancelled before the provider reported usage).
"""

from __future__ import annotations

import re

import orjson

MESSAGE_OVERHEAD = 4
REPLY_OVERHEAD = 3
IMAGE_TOKENS = 1_600
_WORDS = re.compile(r"\w+|[^\w\s]")


def _texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


def _media_parts(content) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") not in (None, "text"))


def prompt_tokens_upper_bound(body: dict) -> int:
    total = REPLY_OVERHEAD
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += MESSAGE_OVERHEAD
            content = message.get("content")
            total += sum(len(text.encode()) for text in _texts(content))
            total += IMAGE_TOKENS * _media_parts(content)
            if message.get("tool_calls"):
                total += len(orjson.dumps(message["tool_calls"]))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        total += len(prompt.encode())
    elif isinstance(prompt, list):
        total += sum(len(p.encode()) if isinstance(p, str) else (len(p) if isinstance(p, list) else 1) for p in prompt)
    if body.get("tools"):
        total += len(orjson.dumps(body["tools"]))
    if isinstance(body.get("response_format"), dict):
        total += len(orjson.dumps(body["response_format"]))
    return total


def estimate_tokens(text: str) -> int:
    return len(_WORDS.findall(text))


def estimate_prompt_tokens(body: dict) -> int:
    total = REPLY_OVERHEAD
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                total += MESSAGE_OVERHEAD + sum(estimate_tokens(t) for t in _texts(message.get("content")))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        total += estimate_tokens(prompt)
    return total
