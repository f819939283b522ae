"""The presets pages of the dashboard: list, create, edit (every save a new version), restore a version."""

from django.urls import path

from . import views

app_name = "presets"

urlpatterns = [
    path("settings/presets", views.presets_page, name="list"),
    path("settings/presets/new", views.preset_new, name="new"),
    path("settings/presets/<str:slug>", views.preset_edit, name="edit"),
    path("settings/presets/<str:slug>/versions/<int:version>/restore", views.preset_restore, name="restore"),
]
