"""Generations in the admin (read-only: they are written by settlement only)."""

from django.contrib import admin

from billing import money

from .models import Generation


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "account", "model", "provider_name", "tokens_prompt", "tokens_completion", "usd_cost", "is_byok", "finish_reason")
    list_filter = ("provider_slug", "is_byok", "streamed", "cancelled", "finish_reason")
    search_fields = ("id", "model", "upstream_id", "account__public_id", "account__owner__email", "api_key__hash")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="cost (USD)", ordering="cost")
    def usd_cost(self, obj):
        return money.nanos_to_usd_string(obj.cost)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
