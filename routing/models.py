"""The catalog: providers, models, and endpoints (a model served by a provider)."""

from __future__ import annotations

from django.db import models


class Provider(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    # An OpenAI-compatible base URL ("https://api.example.com/v1"); the API key is read from
    # the environment variable named here. Without that variable, requests go to the simulator.
    base_url = models.URLField(max_length=300, blank=True)
    api_key_env = models.CharField(max_length=80, blank=True)
    dialect = models.CharField(max_length=20, default="openai")
    privacy_policy_url = models.URLField(max_length=300, blank=True)
    terms_of_service_url = models.URLField(max_length=300, blank=True)
    status_page_url = models.URLField(max_length=300, blank=True)
    headquarters = models.CharField(max_length=2, blank=True)
    datacenters = models.JSONField(default=list, blank=True)
    # Data policy.
    trains_on_data = models.BooleanField(default=True)
    retains_prompts = models.BooleanField(default=True)
    retention_days = models.IntegerField(null=True, blank=True)
    zdr = models.BooleanField(default=False)
    # Whether aborting a stream stops generation (and billing) at this provider.
    supports_cancellation = models.BooleanField(default=True)
    # Declared down by support staff: routing skips all its endpoints until cleared.
    outage = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.slug


class Model(models.Model):
    slug = models.CharField(max_length=160, unique=True)  # "author/name" or "author/name:free"
    canonical_slug = models.CharField(max_length=160)
    author = models.CharField(max_length=80, db_index=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    hugging_face_id = models.CharField(max_length=200, blank=True)
    created = models.BigIntegerField()  # unix seconds, when added
    context_length = models.IntegerField()
    max_completion_tokens = models.IntegerField(null=True, blank=True)
    input_modalities = models.JSONField(default=list)
    output_modalities = models.JSONField(default=list)
    tokenizer = models.CharField(max_length=40, default="Other")
    instruct_type = models.CharField(max_length=40, null=True, blank=True)
    default_parameters = models.JSONField(null=True, blank=True)
    reasoning = models.JSONField(null=True, blank=True)
    knowledge_cutoff = models.CharField(max_length=20, null=True, blank=True)
    is_moderated = models.BooleanField(default=False)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created", "slug"]

    def __str__(self) -> str:
        return self.slug


class Endpoint(models.Model):
    """A model as served by one provider, with that provider's prices and limits.

    Token prices are nano-dollars per million tokens; ``request`` and ``image`` prices are
    nano-dollars per request and per image.
    """

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="endpoints")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="endpoints")
    tag = models.CharField(max_length=120)  # provider slug with variant: "deepinfra/turbo"
    upstream_model_id = models.CharField(max_length=200)
    price_prompt = models.BigIntegerField(default=0)
    price_completion = models.BigIntegerField(default=0)
    price_request = models.BigIntegerField(default=0)
    price_image = models.BigIntegerField(default=0)
    price_cache_read = models.BigIntegerField(null=True, blank=True)
    price_cache_write = models.BigIntegerField(null=True, blank=True)
    price_internal_reasoning = models.BigIntegerField(null=True, blank=True)
    context_length = models.IntegerField()
    max_completion_tokens = models.IntegerField(null=True, blank=True)
    max_prompt_tokens = models.IntegerField(null=True, blank=True)
    quantization = models.CharField(max_length=16, null=True, blank=True)
    supported_parameters = models.JSONField(default=list)
    input_modalities = models.JSONField(default=list)
    output_modalities = models.JSONField(default=list)
    supports_implicit_caching = models.BooleanField(default=False)
    status = models.IntegerField(default=0)
    active = models.BooleanField(default=True)
    # Declared down by support staff: routing skips it until cleared (the catalog file never sets it).
    outage = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "tag"], name="endpoint_unique_model_tag"),
            models.CheckConstraint(
                condition=models.Q(price_prompt__gte=0, price_completion__gte=0, price_request__gte=0, price_image__gte=0),
                name="endpoint_prices_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.slug} @ {self.tag}"
