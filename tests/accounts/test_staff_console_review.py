"""Review findings on the staff console: hostile numbers are never a 500, settlement dead letters
are shown to support staff, and the account page shows the account's privacy defaults."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEntry
from accounts.staff import selectors as staff_selectors
from accounts.staff import services as staff_services
from accounts.staff.roles import LEAD, Actor
from billing import selectors as billing_selectors
from billing.models import SettlementDeadLetter
from billing.money import usd_to_nanos
from openrouter_site.errors import NotFound
from tests.accounts.staff_helpers import make_staff, token
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)

# str.isdigit() holds for each of these; int() raises on the first two, the database on the last.
HOSTILE_NUMBERS = ["²", "٣", "99999999999999999999"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- Hostile numbers ------------------------------------------------------------------------------


def test_lookups_by_number_take_unicode_digits_and_huge_numbers():
    bundle = make_key(credits="1")
    for value in HOSTILE_NUMBERS:
        assert staff_selectors.account_search(query=value) == []
        assert billing_selectors.purchase_find(query=value) is None
        assert staff_selectors.audit_entries(filters=staff_selectors.AuditFilters(account=value)) == []
        assert staff_selectors.api_key_of_account(account=bundle.account, key_id=value) is None
    # Plain ASCII ids still work.
    assert [hit.account for hit in staff_selectors.account_search(query=str(bundle.account.id))] == [bundle.account]


def test_staff_actions_refuse_unicode_digits_and_huge_ids_as_not_found():
    bundle = make_key(credits="1")
    lead = Actor(user=make_staff("lead"), role=LEAD, ip=None)
    for value in HOSTILE_NUMBERS:
        with pytest.raises(NotFound):
            staff_services.purchase_refund_late(actor=lead, account=bundle.account, purchase_id=value, reason="r",
                                                idempotency_key=token())
        with pytest.raises(NotFound):
            staff_services.notice_resend(actor=lead, account=bundle.account, kind="receipt", purchase_id=value,
                                         reason="r", idempotency_key=token())
        with pytest.raises(NotFound):
            staff_services.outage_set(actor=lead, kind="provider", object_id=value, down=True, reason="r",
                                      idempotency_key=token())
    assert not AuditEntry.objects.exists()


def test_staff_pages_take_unicode_digits_and_huge_numbers():
    bundle = make_key(credits="1")
    account = bundle.account
    client = client_for(make_staff("lead"))
    for value in [*HOSTILE_NUMBERS, "-1", ""]:
        for url, params in [
            (reverse("staff:search"), {"q": value}),
            (reverse("staff:ledger", args=[account.id]), {"before": value}),
            (reverse("staff:audit"), {"account": value, "before": value}),
        ]:
            response = client.get(url, params, follow=True)
            assert response.status_code == 200, (url, params)
        for name, fields in [
            ("refund", {"purchase_id": value, "reason": "r"}),
            ("notice", {"kind": "receipt", "purchase_id": value, "reason": "r"}),
        ]:
            response = client.post(reverse(f"staff:{name}", args=[account.id]),
                                   {**fields, "idempotency_key": token()}, follow=True)
            assert response.status_code == 200 and "No such purchase" in response.content.decode(), (name, value)
        response = client.post(reverse("staff:outage"), {"kind": "endpoint", "id": value, "down": "1", "reason": "r",
                                                         "idempotency_key": token()}, follow=True)
        assert response.status_code == 200 and "No such provider or endpoint" in response.content.decode()
    assert not AuditEntry.objects.exists()


# --- Settlement dead letters ---------------------------------------------------------------------


def dead_letter(account_id: int, generation_id: str) -> SettlementDeadLetter:
    return SettlementDeadLetter.objects.create(
        generation_id=generation_id, account_id=account_id, held=usd_to_nanos("0.25"), cost=usd_to_nanos("0.125"),
        reason="IntegrityError: the settlement could not be written", record={"id": generation_id},
    )


def test_support_and_leads_see_settlement_dead_letters_on_the_account_and_across_accounts():
    bundle = make_key(credits="1")
    other = make_key(credits="1")
    dead_letter(bundle.account.id, "gen-dead-mine")
    dead_letter(other.account.id, "gen-dead-other")
    dead_letter(987654321, "gen-dead-gone")  # its account no longer exists
    for role in ("support", "lead"):
        client = client_for(make_staff(role))
        page = client.get(reverse("staff:account", args=[bundle.account.id])).content.decode()
        assert 'data-dead-letter="gen-dead-mine"' in page and "$0.125" in page and "could not be written" in page
        assert "gen-dead-other" not in page
        listing = client.get(reverse("staff:dead-letters"))
        assert listing.status_code == 200
        text = listing.content.decode()
        for generation_id in ("gen-dead-mine", "gen-dead-other", "gen-dead-gone"):
            assert f'data-dead-letter="{generation_id}"' in text
        assert bundle.account.public_id in text and other.account.owner.email in text and "#987654321" in text
        assert text.index("gen-dead-gone") < text.index("gen-dead-mine")  # newest first
        assert reverse("staff:dead-letters") in client.get(reverse("staff:search")).content.decode()
    # No staff role: a 404, like every console page.
    plain = get_user_model().objects.create_user(username="p@example.com", email="p@example.com", is_staff=True)
    for client in (Client(), client_for(plain), client_for(bundle.account.owner)):
        assert client.get(reverse("staff:dead-letters")).status_code == 404


def test_an_account_without_dead_letters_says_none():
    bundle = make_key(credits="1")
    page = client_for(make_staff()).get(reverse("staff:account", args=[bundle.account.id])).content.decode()
    assert 'id="dead-letters"' in page and "data-dead-letter=" not in page


# --- Privacy defaults ------------------------------------------------------------------------------


def test_the_account_page_shows_the_privacy_defaults():
    bundle = make_key(credits="1")
    account = bundle.account
    client = client_for(make_staff())
    page = client.get(reverse("staff:account", args=[account.id])).content.decode()
    assert "Paid endpoints that may train on prompts: allowed" in page
    assert "Zero data retention only: no" in page and "Allowed providers: all" in page and "Ignored providers: none" in page
    account.allow_training_paid = False
    account.allow_training_free = False
    account.zdr_only = True
    account.allowed_providers = ["openai", "anthropic"]
    account.ignored_providers = ["deepinfra"]
    account.save()
    page = client.get(reverse("staff:account", args=[account.id])).content.decode()
    assert "Paid endpoints that may train on prompts: refused" in page
    assert "Free endpoints that may train on prompts: refused" in page
    assert "Zero data retention only: yes" in page
    assert "Allowed providers: openai, anthropic" in page and "Ignored providers: deepinfra" in page


def test_a_nul_character_in_a_query_or_a_form_is_a_message_not_a_500():
    """PostgreSQL refuses NUL in text: the console must never send one to it."""
    bundle = make_key(credits="1")
    client = client_for(make_staff("lead"))
    assert staff_selectors.account_search(query="a\x00b") == []
    assert billing_selectors.purchase_find(query="pi_\x00") is None
    assert client.get(reverse("staff:search"), {"q": "x\x00"}).status_code == 200
    page = client.get(reverse("staff:audit"), {"account": "\x00", "staff": "a\x00"})
    assert page.status_code == 200 and "NUL character" in page.content.decode()
    response = client.post(reverse("staff:note", args=[bundle.account.id]),
                           {"note": "hello\x00", "idempotency_key": token()}, follow=True)
    assert response.status_code == 200 and "contains a NUL character" in response.content.decode()
    assert not AuditEntry.objects.exists()
