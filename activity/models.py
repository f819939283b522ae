"""What happened on each request: metadata only, never prompt or completion text."""

from __future__ import annotations

from django.db import models

from accounts.models import Account, ApiKey


class Generation(models.Model):
    id = models.CharField(max_length=64, primary_key=True)  # "gen-<unix ts>-<20 alnum>"
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="generations")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations")
    created_at = models.DateTimeField(db_index=True)
    api_type = models.CharField(max_length=16, default="completions")
    model = models.CharField(max_length=160)  # the model that answered
    requested_model = models.CharField(max_length=160, blank=True)
    provider_name = models.CharField(max_length=120, blank=True)
    provider_slug = models.CharField(max_length=64, blank=True)
    endpoint_id = models.BigIntegerField(null=True, blank=True)
    upstream_id = models.CharField(max_length=200, blank=True)
    router = models.CharField(max_length=80, null=True, blank=True)
    # Tokens as the provider reported them (the billing basis).
    tokens_prompt = models.IntegerField(default=0)
    tokens_completion = models.IntegerField(default=0)
    tokens_reasoning = models.IntegerField(default=0)
    tokens_cached = models.IntegerField(default=0)
    tokens_cache_write = models.IntegerField(default=0)
    # Money, nano-dollars.
    cost = models.BigIntegerField(default=0)
    cost_prompt = models.BigIntegerField(default=0)
    cost_completion = models.BigIntegerField(default=0)
    upstream_cost = models.BigIntegerField(default=0)
    cache_discount = models.BigIntegerField(default=0)
    is_byok = models.BooleanField(default=False)
    # Timing, milliseconds.
    latency_ms = models.IntegerField(null=True, blank=True)
    generation_time_ms = models.IntegerField(null=True, blank=True)
    first_token_ms = models.IntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, null=True, blank=True)
    native_finish_reason = models.CharField(max_length=64, null=True, blank=True)
    streamed = models.BooleanField(default=False)
    cancelled = models.BooleanField(default=False)
    # Client information.
    http_referer = models.CharField(max_length=500, blank=True)
    app_title = models.CharField(max_length=200, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    external_user = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=256, blank=True)
    provider_responses = models.JSONField(default=list)

    class Meta:
        indexes = [
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
            # The request log's keyset pages, filtered by model or provider.
            models.Index(fields=["account", "model", "created_at"]),
            models.Index(fields=["account", "provider_name", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.id


class UsageRollup(models.Model):
    """Usage summed per account x time bucket x model x provider x key (the activity pages read these).

    Kept exact by ``activity.services.rollups_apply`` in the same transaction that inserts the
    generations; ``check_rollups`` compares them with the raw rows. ``api_key_id`` is 0 for
    generations without a (live) key; a deleted key's rows are read as 0 too (its generations' key
    becomes NULL), so no write is needed when a key goes.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()  # start of the UTC hour (UsageHourly) or day (UsageDaily)
    model = models.CharField(max_length=160)
    provider_name = models.CharField(max_length=120)
    api_key_id = models.BigIntegerField(default=0)
    endpoint_id = models.BigIntegerField(default=0)  # the provider's endpoint (0: unknown); /activity reports it
    requests = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(default=0)  # nano-dollars charged
    byok_cost = models.BigIntegerField(default=0)  # nano-dollars the provider charged BYOK requests (estimate)
    tokens_prompt = models.BigIntegerField(default=0)
    tokens_completion = models.BigIntegerField(default=0)
    tokens_reasoning = models.BigIntegerField(default=0)
    tokens_cached = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageHourly(UsageRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "bucket", "model", "provider_name", "api_key_id", "endpoint_id"],
                name="usage_hourly_unique",
            )
        ]


class UsageDaily(UsageRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "bucket", "model", "provider_name", "api_key_id", "endpoint_id"],
                name="usage_daily_unique",
            )
        ]


class GenerationContent(models.Model):
    """The request and the answer of a generation, stored only for accounts that turned prompt logging on
    (the 1% discount), encrypted at rest (``activity.content_log``), purged after the retention period.
    Written after the response by a background thread; keyed by the generation id without a foreign key,
    since it may be written before the generation row the settlement writer inserts."""

    generation_id = models.CharField(max_length=64, primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    encrypted = models.TextField()  # a Fernet token of the JSON {"input", "output", "error"}
