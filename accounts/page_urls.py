"""The settings pages of accounts: API keys, privacy, BYOK, the account."""

from django.urls import path

from . import oauth_views, views

app_name = "dash-accounts"

urlpatterns = [
    path("settings/keys", views.keys_page, name="keys"),
    path("settings/keys/<str:key_hash>", views.key_edit, name="key-edit"),
    path("settings/keys/<str:key_hash>/toggle", views.key_toggle, name="key-toggle"),
    path("settings/keys/<str:key_hash>/delete", views.key_delete, name="key-delete"),
    path("settings/privacy", views.privacy_page, name="privacy"),
    path("settings/byok", views.byok_page, name="byok"),
    path("settings/byok/<str:key_id>", views.byok_update, name="byok-update"),
    path("settings/byok/<str:key_id>/delete", views.byok_delete, name="byok-delete"),
    path("settings/account", views.account_page, name="account"),
    path("settings/account/sessions", views.sessions_end, name="sessions-end"),
    path("settings/account/delete", views.account_delete, name="account-delete"),
    path("auth", oauth_views.authorize, name="oauth-authorize"),  # OAuth PKCE consent
]
