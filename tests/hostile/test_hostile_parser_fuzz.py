"""Property-based fuzzing (Hypothesis) of the request parser and the dialect adapters (issue 7 §2).

Properties:

* any bytes, and any JSON value, given to the parser give either a parsed request or a 400-class
  ``ApiError``, never another exception;
* a parsed request goes through everything the gateway does with it before a provider sees it
  (provider body, prompt bound, web-search query, compression, file detection) and through every
  dialect adapter without raising anything but ``TranslationError`` (a dialect that cannot say
  something: the gateway tries the next provider) — in particular never ``InvalidRequest``, the
  adapters' guard for what the door should have refused — and the adapters' bodies are JSON.

The strategies mix valid and hostile values at every level of a chat request, so most examples
get past the first check and reach the nested fields (messages, content parts, tool calls, tools,
tool_choice, response_format, reasoning, plugins, provider preferences).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrouter_site.errors import ApiError
from routing.plugins.compression import compress_middle_out
from routing.plugins.file_parser import has_file_parts
from routing.plugins.web_search import search_query
from routing.providers import adapter_for
from routing.providers.base import InvalidRequest, TranslationError
from routing.request_parsing import parse_body, parse_chat, parse_completion, provider_body
from routing.tokens import prompt_tokens_upper_bound

DIALECTS = ("openai", "anthropic", "google")
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
any_json = st.recursive(
    scalars, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


def either(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value (nineteen times in twenty), sometimes anything at all."""
    return st.integers(0, 19).flatmap(lambda roll: any_json if roll == 0 else valid)


def optional_fields(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """An object with any subset of ``fields``, each drawn from its strategy."""
    return st.fixed_dictionaries({}, optional=fields)


text = st.text(max_size=20)
url = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo=", "data:application/pdf;base64,JVBER",
                       "data:audio/wav;base64,AAAA", "data:,hello", ""])
parts = st.one_of(
    optional_fields(type=either(st.just("text")), text=either(text), cache_control=either(st.just({"type": "ephemeral"}))),
    optional_fields(type=either(st.just("image_url")), image_url=either(optional_fields(url=either(url), detail=either(text)))),
    optional_fields(type=either(st.just("video_url")), video_url=either(optional_fields(url=either(url)))),
    optional_fields(type=either(st.just("input_audio")), input_audio=either(optional_fields(data=either(text), format=either(text)))),
    optional_fields(type=either(st.just("file")), file=either(optional_fields(filename=either(text), file_data=either(url)))),
)
content = st.one_of(text, st.lists(either(parts), max_size=3), st.none())
function_call = optional_fields(name=either(text), arguments=either(st.sampled_from(["{}", '{"a": 1}', "[1]", "nope", ""])))
tool_calls = st.lists(either(optional_fields(id=either(text), type=either(st.just("function")), function=either(function_call))),
                      max_size=2)
reasoning_details = st.lists(either(optional_fields(type=either(st.sampled_from(["reasoning.text", "reasoning.encrypted"])),
                                                    text=either(text), signature=either(text), data=either(text),
                                                    format=either(st.sampled_from(["anthropic-claude-v1", "google-gemini-v1"])),
                                                    id=either(text))), max_size=2)
message = st.fixed_dictionaries(
    {"role": either(st.sampled_from(["system", "developer", "user", "assistant", "tool"])), "content": either(content)},
    optional={"name": either(text), "tool_calls": either(tool_calls), "tool_call_id": either(text),
              "reasoning_details": either(reasoning_details)},
)
tool = st.fixed_dictionaries(
    {"type": either(st.sampled_from(["function", "function", "openrouter:web_search"])),
     "function": either(st.fixed_dictionaries(
         {"name": either(st.text(min_size=1, max_size=8))},
         optional={"description": either(text), "parameters": either(st.just({"type": "object", "properties": {}})),
                   "strict": either(st.booleans())}))},
)
tool_choice = either(st.one_of(
    st.sampled_from(["none", "auto", "required"]),
    st.fixed_dictionaries({"type": either(st.just("function")),
                           "function": either(st.fixed_dictionaries({"name": either(st.text(min_size=1, max_size=8))}))}),
))
response_format = st.fixed_dictionaries({"type": either(st.sampled_from(["text", "json_object", "json_schema"]))}, optional=dict(
    json_schema=either(optional_fields(name=either(text), schema=either(st.just({"type": "object"})), strict=either(st.booleans()))),
))
provider = optional_fields(
    order=either(st.lists(text, max_size=2)), only=either(st.lists(text, max_size=2)),
    quantizations=either(st.lists(st.sampled_from(["fp8", "int4", "bf16"]), max_size=2)),
    sort=either(st.sampled_from(["price", "throughput", "latency"])),
    max_price=either(optional_fields(prompt=either(st.sampled_from([1, "0.5", "1e999999", "NaN", "-1"])),
                                     completion=either(st.integers(0, 10)))),
    allow_fallbacks=either(st.booleans()), data_collection=either(st.sampled_from(["allow", "deny"])),
    preferred_max_latency=either(st.floats(0, 10)),
)
plugins = st.lists(either(st.fixed_dictionaries({"id": either(st.sampled_from(["web", "file-parser", "context-compression"]))},
                                                optional=dict(enabled=either(st.booleans()), max_results=either(st.integers(0, 12)),
                                          pdf=either(optional_fields(engine=either(st.sampled_from(["pdf-text", "mistral-ocr"]))))))),
                   max_size=2)
chat_body = st.fixed_dictionaries({"messages": either(st.lists(either(message), min_size=1, max_size=4))}, optional=dict(
    model=either(st.sampled_from(["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"])),
    max_tokens=either(st.integers(-5, 2**40)),
    stream=either(st.booleans()),
    temperature=either(st.floats(0, 2)),
    stop=either(st.one_of(text, st.lists(text, max_size=4))),
    tools=either(st.lists(either(tool), max_size=2)),
    tool_choice=tool_choice,
    parallel_tool_calls=either(st.booleans()),
    response_format=either(response_format),
    reasoning=either(optional_fields(effort=either(st.sampled_from(["low", "high", "none"])),
                                     max_tokens=either(st.integers(-1, 5000)), exclude=either(st.booleans()),
                                     enabled=either(st.booleans()))),
    reasoning_effort=either(st.sampled_from(["low", "medium"])),
    provider=either(provider),
    plugins=either(plugins),
    user=either(text),
    session_id=either(text),
    logit_bias=either(st.dictionaries(st.text(max_size=4), st.integers(-100, 100), max_size=2)),
))
completion_body = optional_fields(
    model=either(st.just("openai/gpt-4o-mini")), prompt=either(st.one_of(text, st.lists(text, max_size=2))),
    max_tokens=either(st.integers(-5, 100)), provider=either(provider),
)


def encode(value) -> bytes:
    """JSON text for any generated value (the stdlib writes integers of any size; orjson stops at 64 bits)."""
    return json.dumps(value).encode()


def parse_or_400(raw: bytes, kind: str = "chat"):
    """The parser's answer: a request, or None after a 400-class ApiError. Anything else fails the test."""
    try:
        body = parse_body(raw)
        return (parse_chat if kind == "chat" else parse_completion)(body, "openai/gpt-4o-mini")
    except ApiError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.message
        return None


def translate_everywhere(request) -> int:
    """Everything the gateway does with a parsed chat request before a provider sees it; returns how
    many dialects translated it."""
    body = provider_body(request)
    orjson.dumps(body)  # the body can always be written back
    prompt_tokens_upper_bound(body)
    messages = body["messages"]
    search_query(messages)
    has_file_parts(messages)
    compress_middle_out(messages, max_prompt_tokens=16)
    translated = 0
    for dialect in DIALECTS:
        try:
            upstream = adapter_for(dialect).request(
                body=body, upstream_model="m", base_url="http://upstream", api_key="k", stream=request.stream
            )
        except InvalidRequest as exc:  # the door let through something the adapter cannot read
            pytest.fail(f"{dialect} adapter refused a parsed request: {exc.message}\n{body!r}")
        except TranslationError:
            continue  # this dialect cannot express it; the gateway tries another provider
        orjson.loads(upstream.body)
        translated += 1
    return translated


@EXAMPLES
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_400(raw):
    parse_or_400(raw)


@EXAMPLES
@given(any_json)
def test_any_json_parses_or_400(value):
    request = parse_or_400(encode(value))
    if request is not None:
        translate_everywhere(request)


@settings(EXAMPLES, max_examples=1500)
@given(chat_body)
def test_chat_bodies_parse_or_400_and_translate_everywhere(body):
    request = parse_or_400(encode(body))
    if request is not None:
        translate_everywhere(request)


@EXAMPLES
@given(completion_body)
def test_completion_bodies_parse_or_400(body):
    request = parse_or_400(encode(body), kind="completions")
    if request is not None:
        orjson.dumps(provider_body(request))


def test_the_strategies_reach_the_adapters():
    """A fuzz test that only ever meets the first check proves nothing: enough generated chat
    bodies are valid, and those translate through at least one dialect."""
    counts = {"parsed": 0, "translated": 0}

    @settings(EXAMPLES, max_examples=300)
    @given(chat_body)
    def sample(body):
        request = parse_or_400(encode(body))
        if request is not None:
            counts["parsed"] += 1
            counts["translated"] += translate_everywhere(request) > 0

    sample()
    assert counts["parsed"] >= 10, counts
    assert counts["translated"] >= 5, counts
