"""The chatroom page (its socket is in routing.py)."""

from django.urls import path

from . import views

app_name = "chatroom"

urlpatterns = [
    path("chat", views.chat_page, name="chat"),
]
