from django.urls import path

from . import api

urlpatterns = [
    path("credits", api.CreditsApi.as_view()),
]
