"""Fixtures of the end-to-end routing tests."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def seeded(monkeypatch):
    """Load balancing draws from a seeded generator (the tests send their requests one after another)."""
    from routing import selection

    monkeypatch.setattr(selection, "_RNG", random.Random(20240601))


@pytest.fixture(scope="module")
def sim():
    """A simulator of the module's own (the dialect round-trip tests); fails the module on a traceback."""
    from tests.simulator_process import SimulatorProcess

    with SimulatorProcess() as process:
        yield process
    assert "Traceback" not in process.stderr_output, process.stderr_output


@pytest.fixture(autouse=True)
def _reset_sim(request: pytest.FixtureRequest) -> None:
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()
