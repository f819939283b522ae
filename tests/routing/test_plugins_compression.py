"""Middle-out context compression (routing.plugins.compression)."""

from __future__ import annotations

import copy

import pytest

from openrouter_site.errors import BadRequest
from routing.plugins.compression import (
    MARKER,
    compress_middle_out,
    compression_wanted,
    message_tokens,
    prompt_tokens,
    truncate_middle,
)
from routing.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, REPLY_OVERHEAD, estimate_tokens


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def chat(turns: int, size: int = 50) -> list[dict]:
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        messages.append({"role": "user", "content": words(size, f"u{i}w")})
        messages.append({"role": "assistant", "content": words(size, f"a{i}w")})
    messages.append({"role": "user", "content": "And now?"})
    return messages


def test_token_counting_matches_the_estimator():
    message = {"role": "user", "content": [{"type": "text", "text": "hello, world"}, {"type": "image_url", "image_url": {"url": "x"}}]}
    assert message_tokens(message) == MESSAGE_OVERHEAD + 3 + IMAGE_TOKENS
    assert prompt_tokens([message, {"role": "assistant", "content": "ok"}]) == REPLY_OVERHEAD + message_tokens(message) + MESSAGE_OVERHEAD + 1


def test_a_prompt_that_fits_is_returned_unchanged():
    messages = chat(3)
    out, removed = compress_middle_out(messages, max_prompt_tokens=prompt_tokens(messages))
    assert out == messages and removed == 0


def test_messages_are_removed_from_the_middle_first():
    messages = chat(6)  # system, 12 turns of 54 tokens, final user
    original = copy.deepcopy(messages)
    budget = prompt_tokens(messages) - 3 * message_tokens(messages[1])
    out, removed = compress_middle_out(messages, max_prompt_tokens=budget)
    assert messages == original  # the input is not touched
    assert removed == 3
    assert prompt_tokens(out) <= budget
    kept = [m["content"].split()[0] if m["role"] != "system" else "system" for m in out]
    # The middle of the 12 turns (u3/a3 region) went; both ends stayed.
    assert kept[:3] == ["system", "u0w0", "a0w0"]
    assert kept[-3:] == ["u5w0", "a5w0", "And"]
    assert "a3w0" not in kept and "u3w0" not in kept


def test_system_messages_and_the_last_user_message_are_never_removed():
    messages = chat(4)
    messages[-1] = {"role": "user", "content": words(40, "question")}
    messages.append({"role": "assistant", "content": "Prefill"})
    out, removed = compress_middle_out(messages, max_prompt_tokens=70)  # the protected ones need 60
    roles = [m["role"] for m in out]
    assert roles == ["system", "user", "assistant"]
    assert out[0] == messages[0]
    assert out[1] == messages[-2]  # the last user message, whole: it fits
    assert out[2] == messages[-1]  # the final message
    assert removed == len(messages) - 3
    assert prompt_tokens(out) <= 70


def test_a_long_middle_message_is_shortened_rather_than_removed():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": words(20, "first")},
        {"role": "assistant", "content": words(1000, "long")},
        {"role": "user", "content": "last question"},
    ]
    budget = prompt_tokens(messages) - 100
    out, removed = compress_middle_out(messages, max_prompt_tokens=budget)
    assert removed == 0
    assert len(out) == 4
    assert prompt_tokens(out) <= budget
    shortened = out[2]["content"]
    assert MARKER in shortened
    assert shortened.startswith("long0 long1") and shortened.endswith("long998 long999")


def test_an_assistant_tool_call_goes_with_its_results():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": words(30, "a")},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": words(30, "r")},
        {"role": "user", "content": words(30, "b")},
        {"role": "assistant", "content": words(30, "c")},
        {"role": "user", "content": "last"},
    ]
    budget = prompt_tokens(messages) - 20
    out, removed = compress_middle_out(messages, max_prompt_tokens=budget)
    assert prompt_tokens(out) <= budget
    has_call = any(m.get("tool_calls") for m in out)
    has_result = any(m["role"] == "tool" for m in out)
    assert has_call == has_result
    assert removed >= 1


def test_over_the_message_limit_half_from_each_end_are_kept():
    messages = [{"role": "system", "content": "sys"}]
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(20)]
    messages.append({"role": "user", "content": "final"})
    out, removed = compress_middle_out(messages, max_prompt_tokens=10_000, max_messages=10)
    assert len(out) == 10 and removed == 12
    # system and the final user message are protected; 8 slots: 4 from the start, 4 from the end.
    assert [m["content"] for m in out] == ["sys", "m0", "m1", "m2", "m3", "m16", "m17", "m18", "m19", "final"]


def test_only_protected_messages_left_are_shortened_longest_first():
    messages = [
        {"role": "system", "content": words(30, "s")},
        {"role": "user", "content": words(500, "q")},
    ]
    out, removed = compress_middle_out(messages, max_prompt_tokens=200)
    assert removed == 0
    assert out[0] == messages[0]
    assert MARKER in out[1]["content"]
    assert prompt_tokens(out) <= 200


def test_text_parts_are_shortened_in_list_content():
    messages = [{"role": "user", "content": [{"type": "text", "text": words(400, "p")}, {"type": "text", "text": "tail"}]}]
    out, _ = compress_middle_out(messages, max_prompt_tokens=100)
    assert prompt_tokens(out) <= 100
    assert out[0]["content"][1] == {"type": "text", "text": "tail"}
    assert MARKER in out[0]["content"][0]["text"]


def test_truncate_middle_keeps_head_and_tail():
    text = words(10, "w")
    cut = truncate_middle(text, 5)
    assert cut == "w0 w1" + MARKER + "w8 w9"
    assert estimate_tokens(cut) == 5
    assert truncate_middle(text, 10) == text


@pytest.mark.parametrize(
    ("body", "context", "wanted"),
    [
        ({}, 8192, True),  # small contexts compress by default
        ({}, 8193, False),
        ({"plugins": [{"id": "context-compression", "engine": "middle-out"}]}, 128_000, True),
        ({"plugins": [{"id": "context-compression", "enabled": False}]}, 4096, False),
        ({"transforms": ["middle-out"]}, 128_000, True),
        ({"transforms": []}, 4096, False),  # the legacy way to turn it off
    ],
)
def test_when_compression_applies(body, context, wanted):
    assert compression_wanted(body, context_length=context) is wanted


def test_a_malformed_plugins_list_is_a_400():
    with pytest.raises(BadRequest):
        compression_wanted({"plugins": "middle-out"}, context_length=4096)
    with pytest.raises(BadRequest):
        compression_wanted({"plugins": [{"id": "context-compression", "enabled": "no"}]}, context_length=4096)
