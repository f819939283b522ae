"""The activity pages (the home page is activity's overview; see openrouter_site/urls.py)."""

from django.urls import path

from . import views

app_name = "activity"

urlpatterns = [
    path("activity", views.activity_page, name="activity"),
    path("activity/log", views.activity_log, name="log"),
    path("activity/export.csv", views.activity_export, name="export"),
    path("activity/generations/<str:generation_id>", views.generation_page, name="generation"),
]
