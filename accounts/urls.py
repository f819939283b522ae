from django.urls import path

from . import api, byok_api, oauth_api

urlpatterns = [
    path("key", api.CurrentKeyApi.as_view()),
    path("auth/key", api.CurrentKeyApi.as_view()),
    path("auth/keys", oauth_api.AuthKeysApi.as_view()),
    path("auth/keys/code", oauth_api.AuthKeysCodeApi.as_view()),
    path("keys", api.KeysApi.as_view()),
    path("keys/<str:key_hash>", api.KeyDetailApi.as_view()),
    path("byok", byok_api.ByokKeysApi.as_view()),
    path("byok/<str:key_id>", byok_api.ByokKeyDetailApi.as_view()),
]
