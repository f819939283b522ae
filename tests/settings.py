"""The test suite's settings: the platform's own, run the way a deployment runs (DEBUG off).

With DEBUG off the platform refuses its public development secrets, so the suite brings its own
(random per run, exported so that the processes tests start inherit them), and switches on the
simulated crypto processor that the crypto tests drive.
"""

import os
import secrets

for _name in ("SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CRYPTO_WEBHOOK_SECRET"):
    os.environ.setdefault(_name, f"test-{_name.lower()}-{secrets.token_urlsafe(32)}")
os.environ.setdefault("CRYPTO_SIMULATED_ENABLED", "1")

from openrouter_site.settings import *  # noqa: E402, F403
