"""The chatroom page: the model picker's catalog and the account's balance; the rest happens in the page
(conversations live in the browser's IndexedDB) and over the socket (``consumers.py``)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.selectors import account_for_user
from accounts.services import account_get_or_create_personal
from billing.money import nanos_to_display

from .selectors import picker_models


@login_required
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    account = account_for_user(user=request.user) or account_get_or_create_personal(user=request.user)
    return render(
        request,
        "chatroom/chat.html",
        {
            "models": picker_models(),
            "balance": nanos_to_display(account.balance),
            "balance_nanos": account.balance,
            "limits": {"max_models": settings.CHATROOM_MAX_MODELS, "max_frame_bytes": settings.CHATROOM_MAX_FRAME_BYTES},
        },
    )
