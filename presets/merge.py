"""A preset applied to an inference body, whatever API it came in on — and a body turned into a preset.

Pure functions on dicts, no I/O (the gateway calls them on the hot path):

* ``preset_reference(body)``: the preset a body names (``"model": "@preset/slug"``, ``"preset": "slug"`` or
  ``"model": "author/model@preset/slug"``), or None — without a lookup, so a request that names none
  costs nothing.
* ``preset_apply(*, body, surface, preset)``: the body with the preset's fields filled in. Request fields
  shallow-override the preset's; tools are the union, a request tool replacing the preset's tool of the
  same name; the preset's system prompt comes first (a system message for chat, before the request's
  ``system`` for Messages, before its ``instructions`` for Responses).
* ``preset_config_from(*, body, surface)``: what ``POST /presets/{slug}/<surface path>`` stores of a body.

A preset's config is kept in chat-completions terms (``tools`` as ``{"type": "function", "function":
{...}}``, ``max_tokens``, ``stop``); each surface's own names and tool shapes are translated here, per
``SURFACE_NAMES``/``_tools_to``/``_tools_from``. An unknown surface is treated like chat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PRESET_PREFIX = "@preset/"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Config fields a preset stores (chat-completions names); anything else in a body is not kept.
CONFIG_FIELDS = (
    "model", "models", "provider", "temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "min_p", "top_a", "seed", "max_tokens", "stop", "tools", "tool_choice",
    "parallel_tool_calls", "reasoning", "response_format", "plugins", "route", "transforms",
)
# Per surface: a config field -> that API's name for it (None: the API has no such field; not applied).
COMMON = {"model": "model", "models": "models", "provider": "provider", "plugins": "plugins", "route": "route",
          "temperature": "temperature", "top_p": "top_p", "transforms": "transforms"}
SURFACE_NAMES: dict[str, dict[str, str | None]] = {
    "chat": {name: name for name in CONFIG_FIELDS},
    "completions": {**{name: name for name in CONFIG_FIELDS}, "tools": None, "tool_choice": None,
                    "parallel_tool_calls": None},
    "messages": {**COMMON, "top_k": "top_k", "max_tokens": "max_tokens", "stop": "stop_sequences", "tools": "tools"},
    "responses": {**COMMON, "max_tokens": "max_output_tokens", "tools": "tools", "tool_choice": "tool_choice",
                  "parallel_tool_calls": "parallel_tool_calls", "reasoning": "reasoning"},
    "embeddings": {"model": "model", "models": "models", "provider": "provider"},
}


@dataclass(frozen=True, slots=True)
class PresetConfig:
    """The designated version of a preset, as the gateway applies it."""

    slug: str
    version: int
    system_prompt: str | None
    config: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PresetReference:
    slug: str
    model: str | None  # "author/model" of "author/model@preset/slug": the request's own model


class PresetError(ValueError):
    """A preset reference or a preset body that is malformed (a 400)."""


def preset_reference(body: dict) -> PresetReference | None:
    """The preset ``body`` names, or None. Raises ``PresetError`` for a malformed reference."""
    model = body.get("model")
    if isinstance(model, str) and PRESET_PREFIX in model:
        own, _, slug = model.partition(PRESET_PREFIX)  # "author/model@preset/slug" or "@preset/slug"
        return PresetReference(_slug(slug), own.strip() or None)
    preset = body.get("preset")
    if preset is None:
        return None
    if not isinstance(preset, str):
        raise PresetError("'preset' must be a string (a preset slug)")
    return PresetReference(_slug(preset.removeprefix(PRESET_PREFIX)), None)


def _slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise PresetError(f"{value[:80]!r} is not a preset slug (lowercase letters, digits, '-' and '_')")
    return value


def preset_apply(*, body: dict, surface: str, preset: PresetConfig, reference: PresetReference | None = None) -> dict:
    """``body`` (not changed) with ``preset`` applied for the API ``surface`` ("chat", "completions",
    "messages", "responses", "embeddings"; any other name is treated as chat)."""
    names = SURFACE_NAMES.get(surface, SURFACE_NAMES["chat"])
    out = dict(body)
    out.pop("preset", None)
    reference = reference or preset_reference(body)
    out.pop("model", None)
    if reference is not None and reference.model:
        out["model"] = reference.model  # the request's own model wins
    elif isinstance(body.get("model"), str) and PRESET_PREFIX not in body["model"]:
        out["model"] = body["model"]  # "preset": "slug" beside a model of its own
    config = preset.config
    for name, value in config.items():
        target = names.get(name)
        if target is None or name == "tools":
            continue
        if target not in out:
            out[target] = _translated(name, value, surface)
    if "tools" in config and names.get("tools"):
        out["tools"] = _merged_tools(_tools_to(config["tools"], surface), body.get("tools"), surface)
    if preset.system_prompt:
        _with_system_prompt(out, surface, preset.system_prompt)
    return out


def _translated(name: str, value: Any, surface: str) -> Any:
    if surface == "messages" and name == "stop" and isinstance(value, str):
        return [value]
    if surface == "responses" and name == "tool_choice" and isinstance(value, dict):
        function = value.get("function") if isinstance(value.get("function"), dict) else {}
        return {"type": "function", "name": function.get("name")}
    return value


def _with_system_prompt(out: dict, surface: str, prompt: str) -> None:
    if surface == "messages":
        system = out.get("system")
        if system is None or system == "":
            out["system"] = prompt
        elif isinstance(system, str):
            out["system"] = f"{prompt}\n\n{system}"
        elif isinstance(system, list):
            out["system"] = [{"type": "text", "text": prompt}, *system]
    elif surface == "responses":
        instructions = out.get("instructions")
        out["instructions"] = f"{prompt}\n\n{instructions}" if isinstance(instructions, str) and instructions else prompt
    elif surface == "completions":
        prompt_field = out.get("prompt")
        if isinstance(prompt_field, str):
            out["prompt"] = f"{prompt}\n\n{prompt_field}"
    elif surface != "embeddings":
        messages = out.get("messages")
        if isinstance(messages, list):
            out["messages"] = [{"role": "system", "content": prompt}, *messages]


# --- tools: stored in chat shape, merged by name in the surface's shape ------------------------------


def tool_name(tool: Any, surface: str) -> str | None:
    """A tool's identity in ``surface``'s shape: its function name, or its type for a server tool."""
    if not isinstance(tool, dict):
        return None
    if surface in ("messages", "responses"):
        name = tool.get("name")
        return f"function:{name}" if isinstance(name, str) and name else f"type:{tool.get('type')}"
    function = tool.get("function")
    if tool.get("type") == "function" and isinstance(function, dict) and isinstance(function.get("name"), str):
        return f"function:{function['name']}"
    parameters = tool.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("name"), str):
        return f"type:{tool.get('type')}:{parameters['name']}"
    return f"type:{tool.get('type')}"


def _merged_tools(preset_tools: list, request_tools: Any, surface: str) -> list:
    if not isinstance(request_tools, list):
        return list(preset_tools) if request_tools is None else request_tools  # a malformed value: the parser's 400
    overridden = {tool_name(t, surface) for t in request_tools}
    return [t for t in preset_tools if tool_name(t, surface) not in overridden] + list(request_tools)


def _tools_to(tools: list, surface: str) -> list:
    """Chat-shaped tools in ``surface``'s shape (server tools are passed as they are)."""
    if surface not in ("messages", "responses"):
        return list(tools)
    out = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(function, dict)):
            out.append(tool)
            continue
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        if surface == "messages":
            converted = {"name": function.get("name"), "input_schema": schema}
        else:
            converted = {"type": "function", "name": function.get("name"), "parameters": schema}
            if "strict" in function:
                converted["strict"] = function["strict"]
        if function.get("description"):
            converted["description"] = function["description"]
        out.append(converted)
    return out


def _tools_from(tools: Any, surface: str) -> Any:
    """``surface``-shaped tools in chat shape (what a preset stores)."""
    if surface not in ("messages", "responses") or not isinstance(tools, list):
        return tools
    out = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise PresetError("each tool must be an object")
        if surface == "messages" and "input_schema" in tool:
            function = {"name": tool.get("name"), "parameters": tool.get("input_schema")}
        elif surface == "responses" and tool.get("type") == "function":
            function = {"name": tool.get("name"), "parameters": tool.get("parameters")}
            if "strict" in tool:
                function["strict"] = tool["strict"]
        else:
            out.append(tool)  # a server or custom tool, kept as sent
            continue
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def preset_config_from(*, body: dict, surface: str) -> tuple[dict, str | None]:
    """What a preset keeps of an inference ``body`` sent in ``surface``'s shape: (config, system prompt).
    ``messages``/``input``/``prompt``/``stream`` and every field outside ``CONFIG_FIELDS`` are ignored."""
    names = SURFACE_NAMES.get(surface, SURFACE_NAMES["chat"])
    config: dict = {}
    for name, source in names.items():
        if source is None or source not in body or body[source] is None:
            continue
        value = body[source]
        if name == "tools":
            value = _tools_from(value, surface)
        elif surface == "responses" and name == "tool_choice" and isinstance(value, dict) and value.get("name"):
            value = {"type": "function", "function": {"name": value["name"]}}
        config[name] = value
    if isinstance(config.get("model"), str) and PRESET_PREFIX in config["model"]:
        raise PresetError("a preset's 'model' cannot name a preset")
    system = _system_prompt_of(body, surface)
    return config, system


def _system_prompt_of(body: dict, surface: str) -> str | None:
    if surface == "messages":
        system = body.get("system")
        if isinstance(system, list):
            system = "\n\n".join(b.get("text", "") for b in system if isinstance(b, dict) and b.get("type") == "text")
    elif surface == "responses":
        system = body.get("instructions")
    else:
        messages = body.get("messages")
        system = None
        if isinstance(messages, list):
            texts = []
            for message in messages:
                if isinstance(message, dict) and message.get("role") in ("system", "developer"):
                    content = message.get("content")
                    if isinstance(content, str):
                        texts.append(content)
                    elif isinstance(content, list):
                        texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            system = "\n\n".join(t for t in texts if t) or None
    if system is not None and not isinstance(system, str):
        raise PresetError("the system prompt must be a string")
    return system or None
