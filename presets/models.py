"""Presets: a named, versioned request configuration of an account (model, provider preferences, system
prompt, parameters, tools). Every edit adds a version; the designated one is what requests use."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Preset(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"
        ARCHIVED = "archived"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="presets")
    slug = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_updated_at = models.DateTimeField(null=True, blank=True)
    designated_version = models.ForeignKey(
        "PresetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "slug"], name="preset_unique_slug_per_account")]
        indexes = [models.Index(fields=["account", "-updated_at"], name="preset_account_updated")]


class PresetVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    preset = models.ForeignKey(Preset, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    system_prompt = models.TextField(null=True, blank=True)
    config = models.JSONField(default=dict)  # chat-completions field names: model, provider, temperature, tools, ...
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["preset", "version"], name="preset_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="preset_version_positive"),
        ]
