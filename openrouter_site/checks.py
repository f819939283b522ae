"""Deployment checks of our own, run by ``manage.py check --deploy`` beside Django's.

The public development secrets are not among them: the settings refuse those outright with
DEBUG off (openrouter_site/install_secrets.py). These are the things that are fine on a laptop
and wrong on a server.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def deploy_settings_check(app_configs=None, **kwargs) -> list[Warning]:
    warnings = []
    if settings.CRYPTO_PROCESSOR == "simulated" and settings.CRYPTO_SIMULATED_ENABLED:
        warnings.append(
            Warning(
                "The simulated crypto processor is on: anyone can 'pay' a USDC purchase on its unauthenticated page.",
                hint="Unset CRYPTO_SIMULATED_ENABLED (and DEBUG) in production.",
                id="openrouter.W001",
            )
        )
    if not settings.BYOK_ENCRYPTION_KEYS:
        warnings.append(
            Warning(
                "BYOK_ENCRYPTION_KEYS is unset: stored provider keys are encrypted with a key derived from SECRET_KEY.",
                hint="Set BYOK_ENCRYPTION_KEYS to one or more Fernet keys.",
                id="openrouter.W002",
            )
        )
    if not settings.STRIPE_SECRET_KEY:
        warnings.append(
            Warning(
                f"STRIPE_SECRET_KEY is unset: card payments go to a local Stripe stand-in at {settings.STRIPE_API_BASE}.",
                hint="Set STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET.",
                id="openrouter.W003",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        warnings.append(
            Warning(
                "ALLOWED_HOSTS accepts any host name.",
                hint="Set ALLOWED_HOSTS to the site's host names, comma-separated.",
                id="openrouter.W004",
            )
        )
    return warnings
