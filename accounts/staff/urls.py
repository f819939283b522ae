"""The staff console: /staff/ (404 for anyone without a staff role)."""

from django.urls import path

from . import views

app_name = "staff"

urlpatterns = [
    path("staff/", views.search_page, name="search"),
    path("staff/accounts/<int:account_id>", views.account_page, name="account"),
    path("staff/accounts/<int:account_id>/ledger", views.ledger_page, name="ledger"),
    path("staff/accounts/<int:account_id>/adjust", views.adjust_credits, name="adjust"),
    path("staff/accounts/<int:account_id>/refund", views.refund_late, name="refund"),
    path("staff/accounts/<int:account_id>/keys/<int:key_id>/disabled", views.key_disabled, name="key-disabled"),
    path("staff/accounts/<int:account_id>/auto-topup", views.auto_topup, name="auto-topup"),
    path("staff/accounts/<int:account_id>/notices", views.notice, name="notice"),
    path("staff/accounts/<int:account_id>/notes", views.note, name="note"),
    path("staff/audit", views.audit_page, name="audit"),
    path("staff/dead-letters", views.dead_letters_page, name="dead-letters"),
    path("staff/catalog", views.catalog_page, name="catalog"),
    path("staff/catalog/outage", views.outage, name="outage"),
    # The support ledger that used to live in billing.
    path("staff/ledger", views.ledger_legacy, name="ledger-legacy"),
    path("staff/ledger/<int:account_id>", views.ledger_legacy, name="ledger-legacy-account"),
]
