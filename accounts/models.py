"""Users own accounts; accounts own credits and API keys."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models


def _public_id() -> str:
    return "user_" + secrets.token_hex(12)


class Account(models.Model):
    """The entity that pays: a person's own account, or an organization's."""

    class Kind(models.TextChoices):
        PERSONAL = "personal"
        ORGANIZATION = "organization"

    public_id = models.CharField(max_length=40, unique=True, default=_public_id)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PERSONAL)
    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="accounts")
    # Cached sums of the ledger, in nano-dollars. ``balance == total_credits - total_usage``
    # and ``balance == sum(ledger entries)``: billing.services keeps them, check_ledger verifies.
    balance = models.BigIntegerField(default=0)
    total_credits = models.BigIntegerField(default=0)
    total_usage = models.BigIntegerField(default=0)
    total_purchased = models.BigIntegerField(default=0)
    # "Allow use of my inputs/outputs": 1% discount on usage.
    allow_training_discount = models.BooleanField(default=False)
    # Privacy defaults the routing engine applies to every request of the account (settings page);
    # a request's own ``provider`` object can narrow them, never widen them.
    allow_training_paid = models.BooleanField(default=True)  # endpoints of paid models that may train on prompts
    allow_training_free = models.BooleanField(default=True)  # the same for free endpoints
    zdr_only = models.BooleanField(default=False)  # zero-data-retention endpoints only
    allowed_providers = models.JSONField(default=list, blank=True)  # provider slugs; empty: all
    ignored_providers = models.JSONField(default=list, blank=True)  # provider slugs never used
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)  # deleted by its owner; kept for the ledger

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance=models.F("total_credits") - models.F("total_usage")),
                name="account_balance_is_credits_minus_usage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.owner} ({self.public_id})"


class ApiKey(models.Model):
    """An API key. Only its SHA-256 is stored; the hash is also its public id."""

    class LimitReset(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    hash = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200)
    label = models.CharField(max_length=40)
    is_management = models.BooleanField(default=False)
    disabled = models.BooleanField(default=False)
    limit = models.BigIntegerField(null=True, blank=True)  # nano-dollars
    limit_reset = models.CharField(max_length=8, choices=LimitReset.choices, null=True, blank=True)
    include_byok_in_limit = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(limit__gte=0) | models.Q(limit__isnull=True), name="key_limit_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.label})"


class ProviderKey(models.Model):
    """A provider credential the account brought (BYOK); the API's ``BYOKKey``.

    Only the Fernet token of the key is stored (``accounts.secrets``), never the key itself.
    Delete is soft, as OpenRouter's: the key material is wiped and ``deleted_at`` set.
    Routing order per provider: prioritized keys (``is_fallback=False``) by ``sort_order``,
    then OpenRouter's own capacity, then fallback keys; ``always_use`` skips OpenRouter's capacity.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.ForeignKey("routing.Provider", on_delete=models.PROTECT, related_name="+")
    encrypted_key = models.TextField()  # Fernet token; "" once deleted
    label = models.CharField(max_length=40)  # masked: "sk-...AbCd"
    name = models.CharField(max_length=255, null=True, blank=True)
    is_fallback = models.BooleanField(default=False)
    always_use = models.BooleanField(default=False)
    disabled = models.BooleanField(default=False)
    sort_order = models.IntegerField(default=0)
    # Allowlists; None means no restriction.
    allowed_models = models.JSONField(null=True, blank=True)
    allowed_api_key_hashes = models.JSONField(null=True, blank=True)
    allowed_user_ids = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "provider", "sort_order"])]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(deleted_at__isnull=True) & ~models.Q(encrypted_key=""))
                | (models.Q(deleted_at__isnull=False) & models.Q(encrypted_key="")),
                name="provider_key_material_iff_live",
            ),
            models.CheckConstraint(condition=models.Q(sort_order__gte=0), name="provider_key_sort_order_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.label} ({self.provider_id})"


class AuditEntry(models.Model):
    """One staff action, as it happened: append-only (never updated or deleted).

    ``save()`` refuses to update and ``delete()`` refuses; on PostgreSQL a trigger refuses
    ``UPDATE``/``DELETE`` too (migration 0004). ``idempotency_key`` is the action form's
    one-time token: a double submission finds the first entry and does nothing again.
    Money figures (``amount``, and balances in ``before``/``after``) are nano-dollars.
    """

    class Action(models.TextChoices):
        CREDIT_GRANT = "credit_grant", "Credit grant"
        CREDIT_DEBIT = "credit_debit", "Credit debit"
        REFUND = "refund", "Refund outside the window"
        KEY_DISABLE = "key_disable", "Key disabled"
        KEY_ENABLE = "key_enable", "Key enabled"
        AUTO_TOPUP_PAUSE = "auto_topup_pause", "Auto top-up paused"
        AUTO_TOPUP_RESUME = "auto_topup_resume", "Auto top-up resumed"
        RECEIPT_RESEND = "receipt_resend", "Receipt resent"
        EXPIRY_NOTICE_RESEND = "expiry_notice_resend", "Expiry notice resent"
        OUTAGE_ON = "outage_on", "Outage declared"
        OUTAGE_OFF = "outage_off", "Outage cleared"
        NOTE = "note", "Note"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    staff_name = models.CharField(max_length=254)  # as it was at the time (email or username)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries")
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    target = models.CharField(max_length=200, blank=True)  # "key:<hash>", "purchase:12", "endpoint:5" ...
    amount = models.BigIntegerField(null=True, blank=True)  # nano-dollars moved, when money moved
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField()  # internal: never shown to the user
    user_reason = models.CharField(max_length=200, blank=True)  # what the user sees (adjustments)
    ticket = models.CharField(max_length=100, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=80, unique=True)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"]), models.Index(fields=["staff", "created_at"])]
        constraints = [models.CheckConstraint(condition=~models.Q(reason=""), name="audit_entry_has_reason")]
        permissions = [
            ("use_staff_console", "Can use the staff support console"),
            ("lead_actions", "Can take support-lead actions (large adjustments, late refunds, outages)"),
        ]

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit entries are append-only")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.staff_name} {self.action} {self.account_id or ''}"


class Membership(models.Model):
    """A user's seat in an organization account (``Account.kind == organization``), with a role."""

    class Role(models.TextChoices):
        ADMIN = "admin"
        MEMBER = "member"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_once_per_account")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account_id} ({self.role})"


class Guardrail(models.Model):
    """Budgets and model/provider rules for the keys and members it is assigned to (none until assigned).

    ``limit`` is in nano-dollars per ``reset_interval`` window (UTC day, Monday-based week, month;
    None: for ever). Allow/ignore lists are None when unset (no restriction)."""

    class Interval(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="guardrails")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=1000, null=True, blank=True)
    limit = models.BigIntegerField(null=True, blank=True)  # nano-dollars
    reset_interval = models.CharField(max_length=8, choices=Interval.choices, null=True, blank=True)
    include_byok_in_budgets = models.BooleanField(default=False)
    allowed_models = models.JSONField(null=True, blank=True)
    ignored_models = models.JSONField(null=True, blank=True)
    allowed_providers = models.JSONField(null=True, blank=True)
    ignored_providers = models.JSONField(null=True, blank=True)
    enforce_zdr_anthropic = models.BooleanField(null=True, blank=True)
    enforce_zdr_openai = models.BooleanField(null=True, blank=True)
    enforce_zdr_google = models.BooleanField(null=True, blank=True)
    enforce_zdr_xai = models.BooleanField(null=True, blank=True)
    enforce_zdr_other = models.BooleanField(null=True, blank=True)
    enable_free_model_publication = models.BooleanField(null=True, blank=True)
    enable_free_model_training = models.BooleanField(null=True, blank=True)
    enable_paid_model_training = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(limit__gte=0) | models.Q(limit__isnull=True), name="guardrail_limit_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class GuardrailKeyAssignment(models.Model):
    """A key's guardrail: at most one per key (assigning another replaces it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    guardrail = models.ForeignKey(Guardrail, on_delete=models.CASCADE, related_name="key_assignments")
    api_key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, related_name="guardrail_assignment")
    assigned_by = models.CharField(max_length=40, null=True, blank=True)  # the assigning user's public id
    created_at = models.DateTimeField(auto_now_add=True)


class GuardrailMemberAssignment(models.Model):
    """A member's guardrail in an account: at most one per member (assigning another replaces it).
    Its budget counts the spend of every key the member created in that account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    guardrail = models.ForeignKey(Guardrail, on_delete=models.CASCADE, related_name="member_assignments")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    assigned_by = models.CharField(max_length=40, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="guardrail_member_once_per_account")]


class OrganizationInvite(models.Model):
    """An invitation to join an organization by email: its link works once and expires.
    Only the SHA-256 of the link's token is stored."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField()
    role = models.CharField(max_length=8, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)


class OAuthApp(models.Model):
    """A third-party app that asked for keys through OAuth PKCE, known by its callback's origin.

    ``origin`` is ``https://myapp.com``, ``http://localhost:3000`` (loopback: one app per port),
    ``vscode://saoudrizwan.claude-dev`` (a native app's custom scheme) or ``headless:`` (no callback).
    ``name`` is what the user sees on the consent page and what keys are named after."""

    origin = models.CharField(max_length=300, unique=True)
    name = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class AuthCode(models.Model):
    """One OAuth PKCE authorization code: the user's consent, exchanged once for an API key.

    Only the code's SHA-256 is stored. The key is created at the exchange with the settings
    chosen here (limit, reset, expiry, label); ``used_at`` and ``api_key`` are set in the same
    transaction, under a row lock, so a code yields at most one key however many exchanges race."""

    class Method(models.TextChoices):
        S256 = "S256"
        PLAIN = "plain"

    code_hash = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="auth_codes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey(OAuthApp, on_delete=models.PROTECT, related_name="codes")
    callback_url = models.TextField(blank=True)  # "" in headless mode
    code_challenge = models.CharField(max_length=128, blank=True)  # "" when the app sent none (as Cline)
    code_challenge_method = models.CharField(max_length=8, choices=Method.choices, blank=True)
    key_label = models.CharField(max_length=100, blank=True)
    key_limit = models.BigIntegerField(null=True, blank=True)  # nano-dollars
    key_limit_reset = models.CharField(max_length=8, choices=ApiKey.LimitReset.choices, null=True, blank=True)
    key_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()  # the code's own expiry (10 minutes), not the key's
    used_at = models.DateTimeField(null=True, blank=True)
    api_key = models.OneToOneField(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="oauth_code")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(key_limit__gte=0) | models.Q(key_limit__isnull=True), name="auth_code_limit_non_negative"
            ),
            models.CheckConstraint(
                condition=(models.Q(code_challenge="") & models.Q(code_challenge_method=""))
                | (~models.Q(code_challenge="") & models.Q(code_challenge_method__in=["S256", "plain"])),
                name="auth_code_challenge_has_method",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.app} for {self.account_id}"
