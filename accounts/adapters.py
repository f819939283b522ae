"""allauth glue: a user who signs up gets a personal account; the promotional signup allowance
follows once the user's email address is verified (allauth's verification flow), once per account."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.signals import email_confirmed
from django.dispatch import receiver

from .services import account_get_or_create_personal


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            account_get_or_create_personal(user=user)
        return user


@receiver(email_confirmed, dispatch_uid="accounts.signup_allowance_on_email_confirmed")
def signup_allowance_on_email_confirmed(sender, request, email_address, **kwargs) -> None:
    """Every path that verifies an address (the emailed link, a code, staff in the admin) sends this signal;
    the grant is idempotent per account, so a second verified address gets nothing more."""
    from billing.services import signup_allowance_grant

    account = account_get_or_create_personal(user=email_address.user)
    signup_allowance_grant(account=account)
