from django.urls import path

from . import api

urlpatterns = [
    path("key", api.CurrentKeyApi.as_view()),
    path("auth/key", api.CurrentKeyApi.as_view()),
    path("keys", api.KeysApi.as_view()),
    path("keys/<str:key_hash>", api.KeyDetailApi.as_view()),
]
