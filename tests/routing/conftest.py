"""Fixtures of the end-to-end routing tests."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def seeded(monkeypatch):
    """Load balancing draws from a seeded generator (the tests send their requests one after another)."""
    from routing import selection

    monkeypatch.setattr(selection, "_RNG", random.Random(20240601))
