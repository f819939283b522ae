"""Token estimates the gateway needs before (or without) a provider's count.

``sent_prompt_tokens_upper_bound`` is a true upper bound for byte-level tokenizers (every
token is at least one byte) of what is sent to a provider, used to size credit holds;
``prompt_tokens_upper_bound`` the same of an OpenAI-shaped body, before plugins and
translation (a first guess, e.g. for a compression budget). ``estimate_tokens``
is an ordinary approximation, used only when a provider cannot tell us (a stream
the client cancelled before the provider reported usage).
"""

from __future__ import annotations

import re

import orjson

MESSAGE_OVERHEAD = 4
REPLY_OVERHEAD = 3
IMAGE_TOKENS = 1_600
WORDS = re.compile(r"\w+|[^\w\s]")


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


BYTES_PER_TOKEN = 3  # BPE tokenizers average about 4 bytes of English per token, about 3 of code or JSON


def text_tokens_estimate(text: str) -> int:
    """A count close to, and rarely below, a real tokenizer's: a token per 3 bytes, and never fewer
    than the words and punctuation marks (the simulator's tokenizer)."""
    return max(-(-len(text.encode()) // BYTES_PER_TOKEN), len(WORDS.findall(text)))


def prompt_tokens_estimate(body: dict) -> int:
    """An OpenAI-shaped body's prompt as a provider would count it (``count_tokens``: what a client shows as
    its context use). Not a bound: holds use ``sent_prompt_tokens_upper_bound``."""
    total = REPLY_OVERHEAD
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += MESSAGE_OVERHEAD
            content = message.get("content")
            total += sum(text_tokens_estimate(text) for text in _texts(content))
            total += IMAGE_TOKENS * _media_parts(content)
            if message.get("tool_calls"):
                total += text_tokens_estimate(orjson.dumps(message["tool_calls"]).decode())
            if isinstance(message.get("reasoning"), str):
                total += text_tokens_estimate(message["reasoning"])
    for field in ("tools", "response_format"):
        if body.get(field):
            total += text_tokens_estimate(orjson.dumps(body[field]).decode())
    return total


# The fields of a provider request (any dialect) that carry what the model reads as its prompt.
PROMPT_FIELDS = (
    "messages", "prompt", "tools", "tool_choice", "response_format",  # OpenAI (and Anthropic's messages, tools)
    "system",  # Anthropic
    "contents", "systemInstruction", "toolConfig", "generationConfig",  # Gemini (its response schema is in the config)
    "input",  # embeddings (a token id takes at least two bytes of its JSON array)
)

EXACT_FIELDS_BELOW = 32_768  # payload bytes under which only the prompt fields are measured


def sent_prompt_tokens_upper_bound(body: dict, payload: bytes, *, file_tokens: int) -> int:
    """The most prompt tokens ``payload`` (the bytes sent to the provider, in its dialect) can count.

    Every token covers at least one byte of the prompt fields as sent, whatever a dialect wraps
    around the text (a Gemini ``functionResponse`` with the function's name, an Anthropic
    ``tool_result``), so their JSON length bounds the text. Media parts of ``body`` (the
    OpenAI-shaped source) count as ``IMAGE_TOKENS`` instead of their bytes, and a file the provider
    reads itself as ``file_tokens`` (it may expand to the whole context). ``n`` does not multiply a prompt.
    """
    if len(payload) > EXACT_FIELDS_BELOW:
        size = len(payload)  # the few other fields are a rounding error here; not worth parsing megabytes
    else:
        sent = orjson.loads(payload)
        size = sum(len(orjson.dumps(sent[name])) for name in PROMPT_FIELDS if name in sent)
    media_chars = 0
    media_tokens = 0
    count = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            count += 1
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if isinstance(part, dict) and part.get("type") not in (None, "text"):
                    media_chars += _string_chars(part)
                    media_tokens += file_tokens if part.get("type") == "file" else IMAGE_TOKENS
    return max(size - media_chars, 0) + media_tokens + MESSAGE_OVERHEAD * count + REPLY_OVERHEAD


def _string_chars(value) -> int:
    """Characters of the strings in ``value``: about the bytes a media part takes in any dialect (where a
    dialect drops a few, such as a data URL's prefix, the media allowance covers them)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_string_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_string_chars(v) for v in value)
    return 0


def estimate_tokens(text: str) -> int:
    return len(WORDS.findall(text))


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
