"""The catalog in the admin: read-only (it is loaded from catalog files by load_catalog; outages are
declared in the staff console so the gateway learns of them)."""

from django.contrib import admin

from .models import Endpoint, Model, Provider


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Provider)
class ProviderAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "dialect", "zdr", "trains_on_data", "outage")
    list_filter = ("dialect", "zdr", "trains_on_data", "outage")
    search_fields = ("slug", "name")


@admin.register(Model)
class ModelAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "author", "context_length", "active")
    list_filter = ("active", "author")
    search_fields = ("slug", "name", "canonical_slug")


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "model", "provider", "tag", "price_prompt", "price_completion", "context_length", "active", "outage")
    list_filter = ("active", "outage", "provider")
    search_fields = ("tag", "model__slug", "upstream_model_id")
    list_select_related = ("model", "provider")
