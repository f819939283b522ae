"""allauth glue: a user who signs up gets a personal account and the signup allowance, once."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from .services import account_get_or_create_personal


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            from billing.services import signup_allowance_grant

            account = account_get_or_create_personal(user=user)
            signup_allowance_grant(account=account)
        return user
