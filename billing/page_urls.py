"""Billing's pages, the page script's endpoints and the processors' webhooks (staff pages: accounts/staff/urls.py)."""

from django.urls import path

from . import views, webhooks

app_name = "billing"

urlpatterns = [
    path("settings/credits", views.credits_page, name="credits"),
    path("settings/credits/receipts/<int:purchase_id>", views.receipt_page, name="receipt"),
    path("settings/credits/quote", views.quote, name="quote"),
    path("settings/credits/card/setup", views.card_setup_create, name="card-setup"),
    path("settings/credits/card/confirm", views.card_setup_confirm, name="card-confirm"),
    path("settings/credits/card/purchase", views.card_purchase_create, name="card-purchase"),
    path("settings/credits/crypto/purchase", views.crypto_purchase_create, name="crypto-purchase"),
    path("settings/credits/purchases/<int:purchase_id>/status", views.purchase_status, name="purchase-status"),
    path("settings/credits/purchases/<int:purchase_id>/refund", views.refund_create, name="refund"),
    path("settings/credits/auto-topup", views.auto_topup_update, name="auto-topup"),
    path("settings/credits/privacy", views.privacy_update, name="privacy"),
    path("billing/webhooks/stripe", webhooks.stripe_webhook, name="webhook-stripe"),
    path("billing/webhooks/crypto", webhooks.crypto_webhook, name="webhook-crypto"),
    path("billing/crypto/simulated/<str:charge_id>", views.crypto_simulated_page, name="crypto-simulated"),
]
