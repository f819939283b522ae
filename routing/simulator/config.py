"""Simulator configuration: per-provider settings, their validation, and the config file.

Config file (JSON)::

    {
      "default":   {"latency_ms": 0, "tokens_per_second": 0},
      "providers": {"openai": {"latency_ms": 50}, "flaky": {"fail": "503", "fail_rate": 0.5}}
    }

A provider's effective settings are the built-in defaults, overlaid with ``default``, overlaid
with its own entry. Every key is optional.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

FAIL_MODES = frozenset({"500", "502", "503", "429", "timeout", "drop", "empty"})

BUILTIN_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "tokens_per_second": 0,
    "completion_tokens": None,
    "fail": None,
    "fail_rate": None,
    "fail_count": None,
    "retry_after": 1,
    "drop_after_chunks": 3,
}


class SettingsError(ValueError):
    """Invalid settings or config file."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """The effective behaviour of one simulated provider."""

    latency_ms: float = 0
    tokens_per_second: float = 0
    completion_tokens: int | None = None
    fail: str | None = None
    fail_rate: float | None = None
    fail_count: int | None = None
    retry_after: float = 1
    drop_after_chunks: int = 3

    @classmethod
    def build(cls, *layers: dict[str, Any]) -> ProviderSettings:
        """Built-in defaults overlaid with each (already validated) layer in turn."""
        merged = dict(BUILTIN_DEFAULTS)
        for layer in layers:
            merged.update(layer)
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def effective_fail_rate(self) -> float:
        return 1.0 if self.fail_rate is None else self.fail_rate


def _number(key: str, value: Any, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SettingsError(f"{key} must be a number")
    if value < 0 or (upper is not None and value > upper):
        bound = f"between 0 and {upper}" if upper is not None else ">= 0"
        raise SettingsError(f"{key} must be {bound}")
    return value


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(f"{key} must be an integer >= 0")
    return value


def _fail_mode(value: Any) -> str | None:
    if value is None:
        return None
    mode = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if mode not in FAIL_MODES:
        raise SettingsError(f"fail must be null or one of {sorted(FAIL_MODES)}")
    return mode


def _validate_value(key: str, value: Any) -> Any:
    if key == "fail":
        return _fail_mode(value)
    if key in ("completion_tokens", "fail_count"):
        return None if value is None else _count(key, value)
    if key == "drop_after_chunks":
        return _count(key, value)
    if key == "fail_rate":
        return None if value is None else _number(key, value, upper=1.0)
    return _number(key, value)  # latency_ms, tokens_per_second, retry_after


def validate_settings(raw: Any) -> dict[str, Any]:
    """Validate a (partial) settings object and return it normalized. Raises SettingsError."""
    if not isinstance(raw, dict):
        raise SettingsError("settings must be a JSON object")
    unknown = sorted(set(raw) - set(BUILTIN_DEFAULTS))
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(BUILTIN_DEFAULTS)}")
    return {key: _validate_value(key, value) for key, value in raw.items()}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The start-up configuration: default layer and per-provider layers (validated)."""

    default: dict[str, Any]
    providers: dict[str, dict[str, Any]]

    @classmethod
    def empty(cls) -> SimulatorConfig:
        return cls(default={}, providers={})

    @classmethod
    def from_obj(cls, raw: Any) -> SimulatorConfig:
        if not isinstance(raw, dict):
            raise SettingsError("config must be a JSON object")
        unknown = sorted(set(raw) - {"default", "providers"})
        if unknown:
            raise SettingsError(f"unknown config key(s): {', '.join(unknown)}")
        default = validate_settings(raw.get("default") or {})
        providers_raw = raw.get("providers") or {}
        if not isinstance(providers_raw, dict):
            raise SettingsError("providers must be a JSON object keyed by provider slug")
        providers: dict[str, dict[str, Any]] = {}
        for slug, settings in providers_raw.items():
            try:
                providers[slug] = validate_settings(settings)
            except SettingsError as exc:
                raise SettingsError(f"providers.{slug}: {exc}") from None
        return cls(default=default, providers=providers)

    @classmethod
    def load(cls, path: str | Path) -> SimulatorConfig:
        try:
            raw = orjson.loads(Path(path).read_bytes())
        except OSError as exc:
            raise SettingsError(f"cannot read config {path}: {exc}") from None
        except orjson.JSONDecodeError as exc:
            raise SettingsError(f"config {path} is not valid JSON: {exc}") from None
        return cls.from_obj(raw)
