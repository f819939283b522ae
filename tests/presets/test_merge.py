"""``presets.merge`` on plain dicts: references, and one preset applied on each API's shape."""

from __future__ import annotations

import pytest

from presets.merge import PresetConfig, PresetError, preset_apply, preset_config_from, preset_reference

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
PRESET = PresetConfig(
    slug="helper", version=3, system_prompt="You are terse.",
    config={"model": "openai/gpt-4o-mini", "temperature": 0.2, "max_tokens": 64, "stop": "END",
            "provider": {"sort": "price"}, "tools": [WEATHER, CLOCK], "top_k": 5},
)


def test_references():
    assert preset_reference({"model": "openai/gpt-4o"}) is None
    assert preset_reference({}) is None
    ref = preset_reference({"model": "@preset/helper"})
    assert (ref.slug, ref.model) == ("helper", None)
    ref = preset_reference({"model": "anthropic/claude-3.5-sonnet@preset/helper"})
    assert (ref.slug, ref.model) == ("helper", "anthropic/claude-3.5-sonnet")
    ref = preset_reference({"preset": "helper", "model": "x/y"})
    assert (ref.slug, ref.model) == ("helper", None)
    for bad in ({"model": "@preset/"}, {"model": "@preset/Has Space"}, {"preset": 5}, {"preset": "../etc"}):
        with pytest.raises(PresetError):
            preset_reference(bad)


def test_chat_request_fields_override_and_tools_merge_by_name():
    mine = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    body = {"model": "@preset/helper", "temperature": 0.9, "messages": [{"role": "user", "content": "hi"}],
            "tools": [mine], "provider": {"only": ["openai"]}}
    out = preset_apply(body=body, surface="chat", preset=PRESET)
    assert out["model"] == "openai/gpt-4o-mini"
    assert out["temperature"] == 0.9  # the request's
    assert out["max_tokens"] == 64 and out["stop"] == "END" and out["top_k"] == 5  # the preset's
    assert out["provider"] == {"only": ["openai"]}  # shallow: the request's object replaces the preset's
    assert out["tools"] == [CLOCK, mine]  # union; the request's get_weather replaces the preset's
    assert out["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    assert body["model"] == "@preset/helper" and len(body["messages"]) == 1  # the input is not changed


def test_chat_model_of_the_request_and_preset_field():
    out = preset_apply(body={"model": "x/own@preset/helper", "messages": []}, surface="chat", preset=PRESET)
    assert out["model"] == "x/own"
    out = preset_apply(body={"preset": "helper", "model": "x/own", "messages": []}, surface="chat", preset=PRESET)
    assert out["model"] == "x/own" and "preset" not in out
    out = preset_apply(body={"preset": "helper", "messages": []}, surface="chat", preset=PRESET)
    assert out["model"] == "openai/gpt-4o-mini"


def test_legacy_completions_get_no_tools_and_a_prefixed_prompt():
    out = preset_apply(body={"model": "@preset/helper", "prompt": "Once"}, surface="completions", preset=PRESET)
    assert "tools" not in out and out["prompt"] == "You are terse.\n\nOnce"


def test_messages_shape():
    mine = {"name": "get_weather", "input_schema": {"type": "object"}}
    body = {"model": "@preset/helper", "max_tokens": 1000, "system": "Be kind.", "tools": [mine],
            "messages": [{"role": "user", "content": "hi"}]}
    out = preset_apply(body=body, surface="messages", preset=PRESET)
    assert out["model"] == "openai/gpt-4o-mini"
    assert out["max_tokens"] == 1000 and out["temperature"] == 0.2 and out["top_k"] == 5
    assert out["stop_sequences"] == ["END"] and "stop" not in out
    assert out["system"] == "You are terse.\n\nBe kind."
    assert out["tools"] == [{"name": "get_time", "input_schema": {"type": "object"}}, mine]
    blocks = preset_apply(body={**body, "system": [{"type": "text", "text": "Be kind."}]}, surface="messages", preset=PRESET)
    assert blocks["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind."}]
    bare = preset_apply(body={"model": "@preset/helper", "messages": []}, surface="messages", preset=PRESET)
    assert bare["system"] == "You are terse." and bare["max_tokens"] == 64
    assert bare["tools"][0] == {"name": "get_weather", "description": "Weather now",
                                "input_schema": WEATHER["function"]["parameters"]}


def test_responses_shape():
    mine = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    patch = {"type": "custom", "name": "apply_patch"}
    body = {"model": "@preset/helper", "input": "hi", "instructions": "Use tools.", "tools": [mine, patch]}
    out = preset_apply(body=body, surface="responses", preset=PRESET)
    assert out["max_output_tokens"] == 64 and "max_tokens" not in out and "stop" not in out and "top_k" not in out
    assert out["instructions"] == "You are terse.\n\nUse tools."
    names = [t.get("name") for t in out["tools"]]
    assert names == ["get_weather", "get_time", "apply_patch"]
    assert out["tools"][0] == {"type": "function", "name": "get_weather", "description": "Weather now",
                               "parameters": WEATHER["function"]["parameters"]}
    assert out["tools"][1] is mine
    assert preset_apply(body={"preset": "helper", "input": "x"}, surface="responses", preset=PRESET)["instructions"] == "You are terse."


def test_embeddings_take_only_model_and_provider():
    out = preset_apply(body={"model": "@preset/helper", "input": "x"}, surface="embeddings", preset=PRESET)
    assert out == {"model": "openai/gpt-4o-mini", "provider": {"sort": "price"}, "input": "x"}


def test_config_from_each_surface():
    config, system = preset_config_from(
        body={"model": "openai/gpt-4o", "temperature": 0.7, "stream": True, "tools": [WEATHER],
              "messages": [{"role": "system", "content": "Sys"}, {"role": "user", "content": "ignored"}]},
        surface="chat",
    )
    assert config == {"model": "openai/gpt-4o", "temperature": 0.7, "tools": [WEATHER]} and system == "Sys"
    config, system = preset_config_from(
        body={"model": "anthropic/claude-3.5-sonnet", "max_tokens": 100, "stop_sequences": ["X"],
              "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
              "tools": [{"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object"}}]},
        surface="messages",
    )
    assert config == {"model": "anthropic/claude-3.5-sonnet", "max_tokens": 100, "stop": ["X"],
                      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"},
                                                                  "description": "Weather now"}}]}
    assert system == "A\n\nB"
    config, system = preset_config_from(
        body={"model": "openai/gpt-4o", "instructions": "Inst", "max_output_tokens": 50, "input": "ignored",
              "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
              "tool_choice": {"type": "function", "name": "f"}},
        surface="responses",
    )
    assert config == {"model": "openai/gpt-4o", "max_tokens": 50,
                      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
                      "tool_choice": {"type": "function", "function": {"name": "f"}}}
    assert system == "Inst"
    # round trip: what was stored from a Responses body applies back in Responses shape
    back = preset_apply(body={"model": "@preset/p", "input": "x"}, surface="responses",
                        preset=PresetConfig(slug="p", version=1, system_prompt=system, config=config))
    assert back["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}]
    assert back["tool_choice"] == {"type": "function", "name": "f"} and back["instructions"] == "Inst"
    with pytest.raises(PresetError):
        preset_config_from(body={"model": "@preset/other"}, surface="chat")
