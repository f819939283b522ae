"""Validate our JSON against OpenRouter's official OpenAPI spec.

The spec (``/work/shared/reference/openrouter-openapi.yaml``, OpenAPI 3.1, ~1.3 MB) is
parsed once per process (``yaml.CSafeLoader`` when PyYAML has libyaml) and registered as one
JSON-Schema resource, so every ``#/components/schemas/...`` reference inside it resolves as
Draft 2020-12 (which OpenAPI 3.1 schemas are). Validators are built once per schema and cached.

Usage in a test::

    from tests.openapi import validate_response

    response = client.get("/api/v1/models")
    validate_response("/models", "get", response.status_code, response.json())

``path_template`` is the spec's path key, relative to the server URL ``/api/v1`` and with its
``{placeholders}``, e.g. ``"/model/{author}/{slug}"``, ``"/keys/{hash}"``, ``"/credits"``,
``"/generation"``, ``"/chat/completions"``. ``status`` is looked up as ``"404"``, then as a
range (``"4XX"``), then ``"default"``. ``content_type`` defaults to ``application/json``; pass
``"text/event-stream"`` with one parsed SSE ``data:`` object to check a streaming chunk.

On mismatch an ``AssertionError`` lists every violation with its JSON path, so a test failure
says which field is wrong. The spec's schemas rarely forbid extra keys, so validation proves
that required keys exist and every value has the documented type/enum; it does not catch
extra fields.

Other helpers:

* ``validate_schema("PublicEndpoint", obj)``: validate against ``#/components/schemas/<name>``
  (e.g. each chunk of a stream against ``"ChatStreamingResponse"``).
* ``validate_request(path_template, method, body)``: validate a request body (handy to check
  that a fixture payload is a legal request before sending it).
* ``response_schema(path_template, method, status)``: the raw (unresolved) schema dict.
* ``spec()``: the whole parsed document.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "data" / "openrouter-openapi.yaml"  # a copy of ../shared/reference
SPEC_URI = "urn:openrouter:openapi"

__all__ = [
    "SPEC_PATH",
    "response_schema",
    "spec",
    "validate_request",
    "validate_response",
    "validate_schema",
]


@functools.cache
def spec() -> dict[str, Any]:
    """The parsed OpenAPI document (loaded once per process)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 - a SafeLoader


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec()))


def _pointer(*parts: str) -> str:
    """A URI fragment (JSON pointer) for ``parts``, escaped per RFC 6901 and percent-encoded."""
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "/" + "/".join(quote(part, safe="") for part in escaped)


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    schema = {"$ref": f"{SPEC_URI}#{pointer}"}
    return Draft202012Validator(schema, registry=_registry())


def _operation(path_template: str, method: str) -> dict[str, Any]:
    paths = spec()["paths"]
    if path_template not in paths:
        raise KeyError(f"path {path_template!r} is not in the OpenRouter spec")
    operation = paths[path_template].get(method.lower())
    if operation is None:
        raise KeyError(f"{method.upper()} {path_template} is not in the OpenRouter spec")
    return operation


def _status_key(responses: dict[str, Any], status: int, where: str) -> str:
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return key
    raise KeyError(f"{where} documents no response for status {status} (has {sorted(responses)})")


def response_schema(path_template: str, method: str, status: int, content_type: str = "application/json") -> dict:
    """The spec's (unresolved) schema for one response."""
    where = f"{method.upper()} {path_template}"
    responses = _operation(path_template, method)["responses"]
    key = _status_key(responses, status, where)
    content = responses[key].get("content", {})
    if content_type not in content:
        raise KeyError(f"{where} {key} has no {content_type} body (has {sorted(content)})")
    return content[content_type]["schema"]


def _check(pointer: str, instance: Any, label: str) -> None:
    errors = sorted(_validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{label} does not match the OpenRouter spec ({len(errors)} error(s)):"]
        for error in errors[:25]:
            location = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
            lines.append(f"  {location}: {error.message[:300]}")
        raise AssertionError("\n".join(lines))


def validate_response(
    path_template: str, method: str, status: int, body: Any, *, content_type: str = "application/json"
) -> None:
    """Assert that ``body`` is a valid ``status`` response of ``method path_template``."""
    where = f"{method.upper()} {path_template}"
    responses = _operation(path_template, method)["responses"]
    key = _status_key(responses, status, where)
    content = responses[key].get("content", {})
    if content_type not in content or "schema" not in content[content_type]:
        raise KeyError(f"{where} {key} has no {content_type} schema (has {sorted(content)})")
    pointer = _pointer("paths", path_template, method.lower(), "responses", key, "content", content_type, "schema")
    _check(pointer, body, f"{where} -> {status} body")


def validate_request(path_template: str, method: str, body: Any, *, content_type: str = "application/json") -> None:
    """Assert that ``body`` is a valid request body for ``method path_template``."""
    operation = _operation(path_template, method)
    content = operation.get("requestBody", {}).get("content", {})
    if content_type not in content:
        raise KeyError(f"{method.upper()} {path_template} takes no {content_type} body")
    pointer = _pointer("paths", path_template, method.lower(), "requestBody", "content", content_type, "schema")
    _check(pointer, body, f"{method.upper()} {path_template} request body")


def validate_schema(name: str, instance: Any) -> None:
    """Assert that ``instance`` matches ``#/components/schemas/<name>``."""
    if name not in spec()["components"]["schemas"]:
        raise KeyError(f"schema {name!r} is not in the OpenRouter spec")
    _check(_pointer("components", "schemas", name), instance, f"schema {name}")
