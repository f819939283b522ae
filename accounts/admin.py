"""Accounts in the admin, for superusers' raw data access (support staff use /staff/).

Read-only: balances move only through billing.services, keys change through accounts.services
(which tell every gateway process), and staff changes go through the console with an audit entry.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing import money

from .models import Account, ApiKey, AuditEntry, ProviderKey

# The admin is for superusers only; support roles work in the staff console.
admin.site.has_permission = lambda request: request.user.is_active and request.user.is_superuser


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "public_id", "owner", "kind", "usd_balance", "usd_total_purchased", "allow_training_discount", "created_at", "console")
    list_filter = ("kind", "allow_training_discount")
    search_fields = ("public_id", "name", "owner__email")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"

    @admin.display(description="balance (USD)", ordering="balance")
    def usd_balance(self, obj):
        return money.nanos_to_usd_string(obj.balance)

    @admin.display(description="purchased (USD)", ordering="total_purchased")
    def usd_total_purchased(self, obj):
        return money.nanos_to_usd_string(obj.total_purchased)

    @admin.display(description="console")
    def console(self, obj):
        return format_html('<a href="{}">staff page</a>', reverse("staff:account", args=[obj.id]))


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "label", "account", "is_management", "disabled", "limit_usd", "limit_reset", "created_at")
    list_filter = ("disabled", "is_management", "limit_reset")
    search_fields = ("hash", "label", "name", "account__public_id", "account__owner__email")
    list_select_related = ("account",)

    @admin.display(description="limit (USD)", ordering="limit")
    def limit_usd(self, obj):
        return "" if obj.limit is None else money.nanos_to_usd_string(obj.limit)


@admin.register(ProviderKey)
class ProviderKeyAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "provider", "label", "name", "is_fallback", "always_use", "disabled", "deleted_at")
    list_filter = ("disabled", "is_fallback", "always_use", "provider")
    search_fields = ("label", "name", "account__public_id", "account__owner__email")
    list_select_related = ("account", "provider")
    exclude = ("encrypted_key",)  # the secret never shows, not even encrypted


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "staff_name", "account", "action", "target", "ticket", "ip")
    list_filter = ("action",)
    search_fields = ("staff_name", "account__public_id", "account__owner__email", "reason", "ticket", "target")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
