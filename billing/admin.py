"""Billing in the admin: read-only (money moves only through billing.services; ledger entries are
append-only), with a link from each account to its staff console page."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from . import money
from .models import BillingProfile, CreditLot, LedgerEntry, Purchase, Refund, SettlementDeadLetter, WebhookEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="ledger")
    def ledger_link(self, obj):
        return format_html('<a href="{}">ledger</a>', reverse("staff:account", args=[obj.account_id]))


def _usd(field: str, description: str):
    @admin.display(description=description, ordering=field)
    def show(self, obj):
        return money.nanos_to_usd_string(getattr(obj, field))

    return show


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "account", "kind", "usd_amount", "usd_balance_after", "idempotency_key", "memo")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "reference", "account__public_id", "account__owner__email")
    list_select_related = ("account",)
    usd_amount = _usd("amount", "amount (USD)")
    usd_balance_after = _usd("balance_after", "balance after (USD)")


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "account", "method", "status", "usd_credits", "usd_fee", "total_cents", "is_auto_topup", "ledger_link")
    list_filter = ("method", "status", "is_auto_topup")
    search_fields = ("stripe_payment_intent_id", "crypto_charge_id", "account__public_id", "account__owner__email")
    list_select_related = ("account",)
    usd_credits = _usd("credits", "credits (USD)")
    usd_fee = _usd("fee", "fee (USD)")


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "source", "usd_amount", "usd_remaining", "created_at", "expires_at", "expired_at", "ledger_link")
    list_filter = ("source",)
    search_fields = ("account__public_id", "account__owner__email")
    list_select_related = ("account",)
    usd_amount = _usd("amount", "amount (USD)")
    usd_remaining = _usd("remaining", "remaining (USD)")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "purchase", "status", "amount_cents", "stripe_refund_id", "failure_reason")
    list_filter = ("status",)
    search_fields = ("stripe_refund_id",)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "received_at", "source", "type", "event_id", "status", "attempts", "error")
    list_filter = ("source", "status", "type")
    search_fields = ("event_id",)


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    list_display = ("account", "stripe_customer_id", "card_brand", "card_last4", "auto_topup_enabled", "auto_topup_failures", "ledger_link")
    list_filter = ("auto_topup_enabled",)
    search_fields = ("stripe_customer_id", "account__public_id", "account__owner__email")


@admin.register(SettlementDeadLetter)
class SettlementDeadLetterAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "generation_id", "account_id", "usd_held", "usd_cost", "reason")
    search_fields = ("generation_id", "reason")
    readonly_fields = ("generation_id", "account_id", "held", "cost", "reason", "record", "created_at")
    usd_held = _usd("held", "held (USD)")
    usd_cost = _usd("cost", "cost not charged (USD)")
