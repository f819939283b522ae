"""What the browser tests share: Debian's Chromium, where screenshots go, and how it is launched.

The ``browser`` fixture itself is in ``tests/conftest.py`` (module scope: one Chromium per test file).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "test-screenshots"
# CI sets it: there a missing browser is a failure, elsewhere the browser tests skip.
REQUIRED = os.environ.get("BROWSER_TESTS_REQUIRED") == "1"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
