"""Guardrails on the route: which models and endpoints the key's guardrails leave (from the cached key info).

Every assigned guardrail filters on its own, so their allowlists intersect, their ignore lists add up
and ZDR holds when any of them asks for it for the model's group; the account's privacy settings are
applied after, by the routing preferences. What no guardrail leaves is a 403 naming the guardrail.
Budgets are not here: they are held with the credits (``billing.metering``).
"""

from __future__ import annotations

import dataclasses

from accounts.guardrail_rules import GuardrailRule
from openrouter_site.errors import Forbidden

from .catalog_cache import EndpointEntry, ModelEntry

ZDR_GROUP_OF_AUTHOR = {"anthropic": "anthropic", "openai": "openai", "google": "google", "x-ai": "xai", "xai": "xai"}


def model_group(slug: str) -> str:
    """The ZDR model group of a model: its author's, or "other"."""
    return ZDR_GROUP_OF_AUTHOR.get(slug.partition("/")[0].lower(), "other")


def _model_allowed(rule: GuardrailRule, slug: str) -> bool:
    names = {slug.lower(), slug.lower().partition(":")[0]}
    if rule.allowed_models is not None and not names & rule.allowed_models:
        return False
    return not names & rule.ignored_models


def _endpoints(rule: GuardrailRule, model: ModelEntry) -> tuple[tuple[EndpointEntry, ...], str]:
    """The model's endpoints the rule keeps, and why the last were removed (when none is kept)."""
    endpoints = model.endpoints
    if rule.allowed_providers is not None:
        endpoints = tuple(e for e in endpoints if e.provider_slug.lower() in rule.allowed_providers)
        if not endpoints:
            return (), f"none of its allowed providers serves {model.slug}"
    if rule.ignored_providers:
        endpoints = tuple(e for e in endpoints if e.provider_slug.lower() not in rule.ignored_providers)
        if not endpoints:
            return (), f"it ignores every provider of {model.slug}"
    if model_group(model.slug) in rule.zdr_groups:
        endpoints = tuple(e for e in endpoints if e.zdr)
        if not endpoints:
            return (), f"it requires zero-data-retention endpoints for {model.slug} and none is available"
    if rule.deny_training_paid or rule.deny_training_free:
        endpoints = tuple(
            e for e in endpoints
            if not (e.trains_on_data and (rule.deny_training_free if e.is_free else rule.deny_training_paid))
        )
        if not endpoints:
            return (), f"it forbids providers that train on prompts, and every endpoint of {model.slug} does"
    return endpoints, ""


def guardrails_apply(models: list[ModelEntry], rules: tuple[GuardrailRule, ...]) -> list[ModelEntry]:
    """``models`` narrowed by every guardrail in ``rules``; Forbidden (403) when none is left."""
    if not rules:
        return models
    kept: list[ModelEntry] = []
    first_refusal: tuple[GuardrailRule, str] | None = None
    for model in models:
        for rule in rules:
            if not _model_allowed(rule, model.slug):
                first_refusal = first_refusal or (rule, f"it does not allow the model {model.slug}")
                break
            endpoints, reason = _endpoints(rule, model)
            if not endpoints:
                first_refusal = first_refusal or (rule, reason)
                break
            if endpoints != model.endpoints:
                model = dataclasses.replace(model, endpoints=endpoints)
        else:
            kept.append(model)
    if kept:
        return kept
    rule, reason = first_refusal
    raise Forbidden(
        f"Guardrail '{rule.name}' blocked this request: {reason}",
        metadata={"guardrail_id": rule.id, "guardrail_name": rule.name, "reason": "not_allowed"},
    )
