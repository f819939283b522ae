"""The guardrails that apply to a key, as the gateway's key cache holds them (read on a cache miss only).

Two can apply: the one assigned to the key, and the one assigned to the key's creator as a member
of the key's account. Nothing else: a guardrail that is not assigned enforces nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

ZDR_GROUPS = ("anthropic", "openai", "google", "xai", "other")


@dataclass(frozen=True, slots=True)
class GuardrailRule:
    """One assigned guardrail as the hot path applies it. ``subject`` names whose budget it is:
    "k:<key hash>" (assigned to the key) or "m:<account id>:<user id>" (assigned to the key's creator)."""

    id: str
    name: str
    subject: str
    limit: int | None  # nano-dollars per window; None: no budget
    reset_interval: str | None
    include_byok: bool
    allowed_models: frozenset[str] | None
    ignored_models: frozenset[str]
    allowed_providers: frozenset[str] | None
    ignored_providers: frozenset[str]
    zdr_groups: frozenset[str]  # model groups (anthropic, openai, google, xai, other) held to ZDR endpoints
    deny_training_paid: bool
    deny_training_free: bool


def _rule(guardrail, subject: str):
    def strings(value) -> frozenset[str]:
        return frozenset(str(v).lower() for v in (value or ()))

    return GuardrailRule(
        id=str(guardrail.id),
        name=guardrail.name,
        subject=subject,
        limit=guardrail.limit,
        reset_interval=guardrail.reset_interval,
        include_byok=guardrail.include_byok_in_budgets,
        allowed_models=strings(guardrail.allowed_models) if guardrail.allowed_models else None,
        ignored_models=strings(guardrail.ignored_models),
        allowed_providers=strings(guardrail.allowed_providers) if guardrail.allowed_providers else None,
        ignored_providers=strings(guardrail.ignored_providers),
        zdr_groups=frozenset(g for g in ZDR_GROUPS if getattr(guardrail, f"enforce_zdr_{g}")),
        deny_training_paid=guardrail.enable_paid_model_training is False,
        deny_training_free=guardrail.enable_free_model_training is False,
    )


def guardrail_rules_for_key(*, key_id: int, key_hash: str, account_id: int, creator_id: int | None) -> tuple:
    from .models import GuardrailKeyAssignment, GuardrailMemberAssignment

    rules = []
    assignment = GuardrailKeyAssignment.objects.select_related("guardrail").filter(api_key_id=key_id).first()
    if assignment is not None:
        rules.append(_rule(assignment.guardrail, f"k:{key_hash}"))
    if creator_id is not None:
        member = (
            GuardrailMemberAssignment.objects.select_related("guardrail")
            .filter(account_id=account_id, user_id=creator_id)
            .first()
        )
        if member is not None:
            rules.append(_rule(member.guardrail, f"m:{account_id}:{creator_id}"))
    return tuple(rules)
