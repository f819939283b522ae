"""The model browser pages (the JSON API stays under /api/v1/models)."""

from django.urls import path

from . import views

app_name = "models"

urlpatterns = [
    path("models", views.models_page, name="browser"),
    path("models/<str:author>/<str:slug>", views.model_page, name="model"),
]
