from django.urls import path

from . import api

urlpatterns = [
    path("generation", api.GenerationApi.as_view()),
    path("generation/content", api.GenerationContentApi.as_view()),
    path("activity", api.ActivityApi.as_view()),
]
