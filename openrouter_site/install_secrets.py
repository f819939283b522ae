"""The three secrets that must never hold their public development values once deployed.

``SECRET_KEY``, ``STRIPE_WEBHOOK_SECRET`` and ``CRYPTO_WEBHOOK_SECRET`` each come from the
environment; unset, from ``var/dev-secrets.json`` (random values written once per install by
``make run``, see :func:`install_secrets_ensure`); else from the public development values below,
which this repository publishes and which the settings refuse while ``DEBUG`` is off.

This module is imported by the settings, so it imports nothing from Django but the exception.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# Known to everyone who has read this file: fine on a laptop with DEBUG=1, never deployed.
PUBLIC_DEV_VALUES = {
    "SECRET_KEY": "dev-insecure-secret-key-change-me-in-production",
    "STRIPE_WEBHOOK_SECRET": "whsec_dev_localstripe",
    "CRYPTO_WEBHOOK_SECRET": "crypto_dev_webhook_secret",
}
FILE_NAME = "dev-secrets.json"


def install_secrets_load(var_dir: Path) -> dict[str, str]:
    """The per-install values ``make run`` generated in ``var_dir`` (empty when there are none)."""
    try:
        values = json.loads((var_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(values, dict):
        return {}
    return {name: value for name, value in values.items() if name in PUBLIC_DEV_VALUES and isinstance(value, str) and value}


def install_secrets_ensure(var_dir: Path) -> dict[str, str]:
    """Load the per-install secrets, generating (and saving, owner-readable only) any that are missing."""
    values = install_secrets_load(var_dir)
    missing = [name for name in PUBLIC_DEV_VALUES if name not in values]
    if missing:
        for name in missing:
            prefix = "whsec_" if name == "STRIPE_WEBHOOK_SECRET" else ""
            values[name] = prefix + secrets.token_urlsafe(48)
        var_dir.mkdir(parents=True, exist_ok=True)
        path = var_dir / FILE_NAME
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle, indent=1)
        tmp.replace(path)
    return values


def secret_setting(name: str, var_dir: Path) -> str:
    """The environment's value, else this install's generated one, else the public development value."""
    return os.environ.get(name) or install_secrets_load(var_dir).get(name) or PUBLIC_DEV_VALUES[name]


def secrets_refuse_public(*, debug: bool, values: dict[str, str]) -> None:
    """With DEBUG off, refuse to run while any of the secrets holds its public development value."""
    if debug:
        return
    public = [name for name, value in values.items() if PUBLIC_DEV_VALUES.get(name) == value]
    if public:
        names = ", ".join(public)
        raise ImproperlyConfigured(
            f"Refusing to start with DEBUG off: {names} still "
            f"{'holds its' if len(public) == 1 else 'hold their'} public development "
            f"value{'' if len(public) == 1 else 's'}. Set {names} in the environment (see the README's "
            "'Production settings'), or run `make run` once to generate per-install development secrets "
            "in var/, or set DEBUG=1 on a development machine."
        )
