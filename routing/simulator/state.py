"""Run-time state of the simulated providers: settings, failure draws, stats, last request."""

from __future__ import annotations

import random
from typing import Any

from .config import ProviderSettings, SimulatorConfig, validate_settings
from .text import seed_for


class ProviderStats:
    """Counters for one provider. ``requests == completed + failed + cancelled + in flight``."""

    __slots__ = ("requests", "completed", "failed", "cancelled", "tokens_emitted")

    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.tokens_emitted = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ProviderState:
    """One provider: its settings layer, failure RNG and budget, stats, last request and prompt cache."""

    __slots__ = (
        "slug",
        "overrides",
        "settings",
        "fail_remaining",
        "rng",
        "stats",
        "last_request",
        "last_headers",
        "prompt_cache",
        "_seed",
    )

    def __init__(self, slug: str, overrides: dict[str, Any], default: dict[str, Any], seed: int) -> None:
        self.slug = slug
        self.overrides = dict(overrides)
        self._seed = seed
        self.stats = ProviderStats()
        self.last_request: Any = None
        self.last_headers: tuple[tuple[bytes, bytes], ...] | None = None  # raw, as received
        self.prompt_cache: set[bytes] = set()  # prompt prefixes written to the simulated cache
        self.settings = ProviderSettings()
        self.fail_remaining: int | None = None
        self.rng = random.Random()
        self.apply(default)

    def apply(self, default: dict[str, Any]) -> None:
        """Recompute effective settings; re-arm ``fail_count`` and re-seed the failure RNG."""
        self.settings = ProviderSettings.build(default, self.overrides)
        self.fail_remaining = self.settings.fail_count
        self.rng.seed(seed_for("fail", self.slug, str(self._seed)))

    def draw_failure(self) -> str | None:
        """The failure mode for the next request, or None when it should succeed."""
        settings = self.settings
        mode = settings.fail
        if mode is None or self.fail_remaining == 0:
            return None
        rate = settings.effective_fail_rate
        if rate < 1.0 and self.rng.random() >= rate:
            return None
        if self.fail_remaining is not None:
            self.fail_remaining -= 1
        return mode

    def describe(self) -> dict[str, Any]:
        data = self.settings.as_dict()
        data["fail_remaining"] = self.fail_remaining
        return data


class Registry:
    """All providers, created lazily for any slug, plus the start-up config to reset to."""

    def __init__(self, config: SimulatorConfig | None = None, seed: int = 0) -> None:
        self.config = config or SimulatorConfig.empty()
        self.seed = seed
        self.default: dict[str, Any] = {}
        self.providers: dict[str, ProviderState] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the start-up config; stats and last requests cleared."""
        self.default = dict(self.config.default)
        self.providers = {slug: self._new(slug, layer) for slug, layer in self.config.providers.items()}

    def _new(self, slug: str, overrides: dict[str, Any]) -> ProviderState:
        return ProviderState(slug, overrides, self.default, self.seed)

    def get(self, slug: str) -> ProviderState:
        state = self.providers.get(slug)
        if state is None:
            state = self.providers[slug] = self._new(slug, self.config.providers.get(slug, {}))
        return state

    def peek(self, slug: str) -> ProviderState:
        """The provider's state, without registering a provider that has not been seen."""
        state = self.providers.get(slug)
        return state if state is not None else self._new(slug, self.config.providers.get(slug, {}))

    def replace(self, slug: str, raw: Any) -> ProviderState:
        """PUT: the provider's own layer becomes exactly ``raw`` (over the default layer)."""
        layer = validate_settings(raw)
        state = self.get(slug)
        state.overrides = layer
        state.apply(self.default)
        return state

    def merge(self, slug: str, raw: Any) -> ProviderState:
        """PATCH: ``raw`` is merged into the provider's own layer."""
        layer = validate_settings(raw)
        state = self.get(slug)
        state.overrides.update(layer)
        state.apply(self.default)
        return state

    def set_default(self, raw: Any, *, merge: bool) -> dict[str, Any]:
        """Change the default layer (applies to every provider); returns the new layer."""
        layer = validate_settings(raw)
        self.default = {**self.default, **layer} if merge else layer
        for state in self.providers.values():
            state.apply(self.default)
        return self.default

    def stats(self) -> dict[str, dict[str, int]]:
        return {slug: state.stats.as_dict() for slug, state in self.providers.items()}
