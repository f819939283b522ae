"""The staff console: roles (404 for everyone else), look-up, the account page, and every action's effect.

Each money action is checked against the ledger invariant (balance = Σ ledger = Σ lots) and leaves
exactly one audit entry; a repeated form token acts once; bad input is a message, never a 500.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEntry
from accounts.staff import services as staff_services
from accounts.staff.roles import Actor
from billing.models import CreditLot, LedgerEntry
from billing.money import usd_to_nanos
from billing.selectors import ledger_drift
from tests.accounts.staff_helpers import make_staff, page_messages, post_action, token
from tests.factories import make_account, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def account_url(account, name: str = "account", *args) -> str:
    return reverse(f"staff:{name}", args=[account.id, *args])


def adjust(client, account, amount: str, direction: str = "grant", **fields):
    fields.setdefault("reason", "ticket said so")
    fields.setdefault("user_reason", "credit for failed requests")
    return post_action(client, account_url(account, "adjust"), direction=direction, amount=amount, **fields)


def balance(account) -> int:
    account.refresh_from_db()
    return account.balance


# --- Who may see the console --------------------------------------------------------------------


def staff_urls(account, key) -> list[tuple[str, str]]:
    return [
        ("get", reverse("staff:search")),
        ("get", reverse("staff:search") + "?q=x"),
        ("get", account_url(account)),
        ("get", account_url(account, "ledger")),
        ("get", reverse("staff:audit")),
        ("get", reverse("staff:audit") + "?format=csv"),
        ("get", reverse("staff:catalog")),
        ("get", reverse("staff:dead-letters")),
        ("get", "/staff/ledger"),
        ("get", f"/staff/ledger/{account.id}"),
        ("post", account_url(account, "adjust")),
        ("post", account_url(account, "refund")),
        ("post", account_url(account, "key-disabled", key.id)),
        ("post", account_url(account, "auto-topup")),
        ("post", account_url(account, "notice")),
        ("post", account_url(account, "note")),
        ("post", reverse("staff:outage")),
    ]


def test_every_staff_url_is_a_404_for_anyone_without_a_staff_role():
    bundle = make_key(credits="5")
    plain = get_user_model().objects.create_user(username="plain@example.com", email="plain@example.com")
    django_staff = get_user_model().objects.create_user(username="st@example.com", email="st@example.com", is_staff=True)
    for client in (Client(), client_for(plain), client_for(django_staff), client_for(bundle.account.owner)):
        for method, url in staff_urls(bundle.account, bundle.key):
            response = getattr(client, method)(url, {"amount": "5", "direction": "grant", "reason": "x"})
            assert response.status_code == 404, (method, url, response.status_code)
    assert balance(bundle.account) == usd_to_nanos("5")
    assert not AuditEntry.objects.exists()


def test_support_and_leads_reach_every_page():
    bundle = make_key(credits="5")
    for role in ("support", "lead"):
        client = client_for(make_staff(role))
        for method, url in staff_urls(bundle.account, bundle.key):
            if method == "get":
                assert getattr(client, method)(url, follow=True).status_code == 200, url
    superuser = get_user_model().objects.create_superuser(username="root", email="root@example.com", password="x")
    assert client_for(superuser).get(account_url(bundle.account)).status_code == 200
    # The site's nav shows the console to staff only.
    assert 'href="/staff/"' in client_for(make_staff()).get("/settings/credits").content.decode()
    assert 'href="/staff/"' not in client_for(bundle.account.owner).get("/settings/credits").content.decode()


# --- Look up ----------------------------------------------------------------------------------------


def test_one_search_box_finds_the_account_by_any_of_its_ids(client):
    bundle = make_key(credits="5", name="laptop")
    other = make_key(credits="1")
    client.force_login(make_staff())
    account = bundle.account
    queries = [account.owner.email.upper(), account.public_id, str(account.id), bundle.key.hash, bundle.raw, bundle.key.label]
    for query in queries:
        response = client.get(reverse("staff:search"), {"q": query})
        assert response.status_code == 302 and response.url == account_url(account), query
    response = client.get(reverse("staff:search"), {"q": "nobody@nowhere.example"})
    assert response.status_code == 200 and "Nothing matches" in response.content.decode()
    response = client.get(reverse("staff:search"), {"q": "@example.com"})  # partial email: a list to choose from
    assert other.account.owner.email in response.content.decode()


# --- Credit adjustments -----------------------------------------------------------------------------


def test_support_grants_credits_the_user_sees_it_and_the_audit_has_it():
    account = make_account(credits="2")
    staff = make_staff(email="alice@staff.example.com")
    client = client_for(staff)
    response = adjust(client, account, "5", reason="refund of failed requests, internal", user_reason="failed requests", ticket="T-1")
    assert "Granted $5.00; the balance is now $7.00." in page_messages(response)
    assert balance(account) == usd_to_nanos("7")
    entry = LedgerEntry.objects.get(account=account, kind="adjustment")
    assert (entry.amount, entry.memo, entry.reference) == (usd_to_nanos("5"), "support adjustment: failed requests", "T-1")
    lot = CreditLot.objects.get(account=account, amount=usd_to_nanos("5"))
    assert lot.source == CreditLot.Source.PROMOTIONAL and lot.refundable_until is None  # goodwill: never refundable
    [audit] = AuditEntry.objects.all()
    assert (audit.staff, audit.staff_name, audit.account, audit.action) == (staff, staff.email, account, "credit_grant")
    assert (audit.amount, audit.before, audit.after) == (usd_to_nanos("5"), {"balance": usd_to_nanos("2")}, {"balance": usd_to_nanos("7")})
    assert (audit.reason, audit.user_reason, audit.ticket, audit.ip) == ("refund of failed requests, internal", "failed requests", "T-1", "127.0.0.1")
    assert ledger_drift() == []
    # The user's credits page names it, without the internal note.
    owner = client_for(account.owner).get("/settings/credits").content.decode()
    assert "support adjustment: failed requests" in owner and "internal" not in owner


def test_a_double_submission_adjusts_once():
    account = make_account(credits="1")
    client = client_for(make_staff())
    form_token = token()
    for _ in range(3):
        response = adjust(client, account, "5", idempotency_key=form_token)
        assert response.status_code == 200
    assert balance(account) == usd_to_nanos("6")
    assert LedgerEntry.objects.filter(kind="adjustment").count() == 1 and AuditEntry.objects.count() == 1
    # The same token for another account's action is refused, not re-applied.
    other = make_account(credits="1")
    response = adjust(client, other, "5", idempotency_key=form_token)
    assert "already used for another action" in " ".join(page_messages(response))
    assert balance(other) == usd_to_nanos("1")
    assert ledger_drift() == []


def test_concurrent_submissions_of_one_form_adjust_once():
    account = make_account(credits="1")
    actor = Actor(user=make_staff(), role="support", ip=None)
    form_token = token()
    from concurrent.futures import ThreadPoolExecutor

    def submit(_):
        try:
            return staff_services.account_credits_adjust(
                actor=actor, account=account, direction="grant", amount="3", reason="r", user_reason="u", idempotency_key=form_token
            ).id
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(submit, range(4)))
    assert len(ids) == 1
    assert balance(account) == usd_to_nanos("4") and AuditEntry.objects.count() == 1
    assert ledger_drift() == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "-5"}, "Enter a positive amount"),
        ({"amount": "0"}, "more than $0.00"),
        ({"amount": "0.00"}, "more than $0.00"),
        ({"amount": "1e999999"}, "Enter a positive amount"),
        ({"amount": "NaN"}, "Enter a positive amount"),
        ({"amount": "5.001"}, "at most two decimals"),
        ({"amount": "99999999999999999999"}, "Enter a positive amount"),
        ({"amount": ""}, "Enter a positive amount"),
        ({"amount": "5", "reason": "  "}, "A reason is required"),
        ({"amount": "5", "user_reason": ""}, "reason shown to the user is required"),
        ({"amount": "5", "reason": "x" * 2001}, "too long"),
        ({"amount": "5", "direction": "steal"}, "Choose grant or debit"),
        ({"amount": "5", "idempotency_key": ""}, "This form has expired"),
        ({"amount": "5", "idempotency_key": "short"}, "This form has expired"),
        ({"amount": "100.01"}, "over the limit of $100.00"),
        ({"amount": "5", "confirm_negative": "on"}, "Only a support lead can take a balance below zero"),
    ],
)
def test_bad_adjustments_are_a_message_and_change_nothing(fields, message):
    account = make_account(credits="2")
    client = client_for(make_staff())
    fields = {"direction": "grant", **fields}
    response = adjust(client, account, fields.pop("amount"), **fields)
    assert response.status_code == 200
    assert message in " ".join(page_messages(response))
    assert balance(account) == usd_to_nanos("2")
    assert not AuditEntry.objects.exists() and not LedgerEntry.objects.filter(kind="adjustment").exists()
    assert ledger_drift() == []


def test_a_lead_may_adjust_more_within_the_lead_limit(settings):
    settings.STAFF_LEAD_ADJUSTMENT_LIMIT_USD = "1000"
    account = make_account(credits="0")
    lead = client_for(make_staff("lead"))
    assert "Granted $500.00" in " ".join(page_messages(adjust(lead, account, "500")))
    assert "over the limit of $1,000.00" in " ".join(page_messages(adjust(lead, account, "1000.01")))
    assert balance(account) == usd_to_nanos("500")
    assert ledger_drift() == []


def test_a_debit_takes_credits_back_from_the_lots_but_never_below_zero_for_support():
    account = make_account(credits="3")
    support = client_for(make_staff())
    assert "Debited $2.50; the balance is now $0.50." in page_messages(adjust(support, account, "2.50", "debit"))
    assert balance(account) == usd_to_nanos("0.5")
    assert sum(CreditLot.objects.filter(account=account).values_list("remaining", flat=True)) == usd_to_nanos("0.5")
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert entry.amount == -usd_to_nanos("2.5") and entry.balance_after == usd_to_nanos("0.5")
    response = adjust(support, account, "1", "debit")
    assert "would take the balance below zero" in " ".join(page_messages(response))
    assert balance(account) == usd_to_nanos("0.5")
    [audit] = AuditEntry.objects.all()
    assert (audit.action, audit.amount) == ("credit_debit", -usd_to_nanos("2.5"))
    assert ledger_drift() == []


def test_a_lead_can_confirm_a_debit_below_zero_and_the_next_credits_pay_the_debt():
    from billing.counters import counters

    account = make_account(credits="1")
    lead = client_for(make_staff("lead"))
    assert "would take the balance below zero" in " ".join(page_messages(adjust(lead, account, "3", "debit")))
    response = adjust(lead, account, "3", "debit", confirm_negative="on")
    assert "Debited $3.00; the balance is now -$2.00." in page_messages(response)
    assert balance(account) == -usd_to_nanos("2")
    assert ledger_drift() == []
    assert counters().snapshot(account.id) == {"bal": -usd_to_nanos("2"), "held": 0}  # requests now get 402
    adjust(lead, account, "5")
    assert balance(account) == usd_to_nanos("3")
    assert sum(CreditLot.objects.filter(account=account).values_list("remaining", flat=True)) == usd_to_nanos("3")
    assert ledger_drift() == []


# --- Keys, auto top-up, notices, notes ------------------------------------------------------------


def test_support_disables_and_enables_a_key_with_a_reason():
    bundle = make_key(credits="1")
    client = client_for(make_staff())
    url = account_url(bundle.account, "key-disabled", bundle.key.id)
    response = post_action(client, url, disabled="1", reason="")
    assert "A reason is required." in page_messages(response)
    response = post_action(client, url, disabled="1", reason="leaked on GitHub")
    assert "is disabled, on every gateway process" in " ".join(page_messages(response))
    bundle.key.refresh_from_db()
    assert bundle.key.disabled
    post_action(client, url, disabled="0", reason="rotated")
    bundle.key.refresh_from_db()
    assert not bundle.key.disabled
    assert list(AuditEntry.objects.order_by("id").values_list("action", "before", "after")) == [
        ("key_disable", {"disabled": False}, {"disabled": True}),
        ("key_enable", {"disabled": True}, {"disabled": False}),
    ]
    # Another account's key through this account's page: 404.
    other = make_key(credits="1")
    assert client.post(account_url(bundle.account, "key-disabled", other.key.id), {"reason": "x", "idempotency_key": token()}).status_code == 404


def test_support_pauses_and_resumes_auto_topup_resetting_its_failures():
    from billing.models import BillingProfile

    account = make_account(credits="1")
    BillingProfile.objects.create(
        account=account, default_payment_method_id="pm_card", card_brand="visa", card_last4="4242",
        auto_topup_enabled=True, auto_topup_failures=2,
    )
    client = client_for(make_staff())
    post_action(client, account_url(account, "auto-topup"), enabled="0", reason="card keeps failing")
    profile = BillingProfile.objects.get(account=account)
    assert not profile.auto_topup_enabled and profile.auto_topup_disabled_reason == "Paused by support."
    post_action(client, account_url(account, "auto-topup"), enabled="1", reason="user updated card")
    profile.refresh_from_db()
    assert profile.auto_topup_enabled and profile.auto_topup_failures == 0
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == ["auto_topup_pause", "auto_topup_resume"]
    # No saved card: resuming is refused with the reason.
    bare = make_account(credits="1")
    response = post_action(client, account_url(bare, "auto-topup"), enabled="1", reason="asked")
    assert "no saved card" in " ".join(page_messages(response))
    assert AuditEntry.objects.filter(account=bare).count() == 0


def test_resend_the_expiry_notice_emails_after_the_commit(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    account = make_account(credits="4")
    client = client_for(make_staff())
    response = post_action(client, account_url(account, "notice"), kind="expiry", reason="user asked")
    assert "No credits of this account expire" in " ".join(page_messages(response))
    CreditLot.objects.filter(account=account).update(expires_at=CreditLot.objects.get(account=account).created_at)
    post_action(client, account_url(account, "notice"), kind="expiry", reason="user asked")
    assert [m.subject for m in mail.outbox] == ["Your credits expire soon"]
    assert AuditEntry.objects.get().action == "expiry_notice_resend"
    response = post_action(client, account_url(account, "notice"), kind="receipt", purchase_id="999", reason="x")
    assert "No such purchase" in page_messages(response)
    response = post_action(client, account_url(account, "notice"), kind="fax", reason="x")
    assert "Unknown notice." in page_messages(response)


def test_a_note_on_the_account_shows_in_its_audit_log():
    account = make_account(credits="1")
    client = client_for(make_staff(email="bob@staff.example.com"))
    post_action(client, account_url(account, "note"), note="User called about invoice", ticket="T-9")
    page = client.get(account_url(account)).content.decode()
    assert "User called about invoice" in page and "bob@staff.example.com" in page
    assert AuditEntry.objects.get().action == "note"


# --- Audit log --------------------------------------------------------------------------------------


def test_audit_entries_are_append_only_in_the_model_and_in_postgresql():
    account = make_account(credits="1")
    client = client_for(make_staff())
    post_action(client, account_url(account, "note"), note="n")
    entry = AuditEntry.objects.get()
    entry.reason = "changed"
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()
    if connection.vendor == "postgresql":
        from django.db import DatabaseError

        for sql in ("UPDATE accounts_auditentry SET reason = 'x'", "DELETE FROM accounts_auditentry"):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
    assert AuditEntry.objects.get().reason == "n"


def test_the_audit_log_filters_and_exports_csv():
    first, second = make_account(credits="1"), make_account(credits="1")
    alice, bob = make_staff(email="alice@staff.example.com"), make_staff(email="bob@staff.example.com")
    adjust(client_for(alice), first, "1.25")
    post_action(client_for(bob), account_url(second, "note"), note="called")
    viewer = client_for(make_staff())
    page = viewer.get(reverse("staff:audit"), {"staff": "alice"}).content.decode()
    assert "Credit grant" in page and "called" not in page
    page = viewer.get(reverse("staff:audit"), {"account": second.public_id, "action": "note"}).content.decode()
    assert "called" in page and "alice@" not in page
    page = viewer.get(reverse("staff:audit"), {"since": "not-a-date", "action": "hack"}).content.decode()
    assert "is not a date" in page and "is not an action" in page
    response = viewer.get(reverse("staff:audit"), {"format": "csv", "staff": "alice"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:5] == ["id", "when (UTC)", "staff", "account", "action"]
    assert len(rows) == 2 and rows[1][2] == "alice@staff.example.com" and rows[1][6] == "1.250000000"
    assert rows[1][7] == "balance=1.000000000" and rows[1][8] == "balance=2.250000000"


def test_a_form_without_its_csrf_token_gets_a_clear_page_and_nothing_happens():
    account = make_account(credits="1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff())
    response = client.post(account_url(account, "adjust"), {"direction": "grant", "amount": "5", "reason": "r", "user_reason": "u", "idempotency_key": token()})
    assert response.status_code == 403
    assert "nothing was done" in response.content.decode()
    assert balance(account) == usd_to_nanos("1") and not AuditEntry.objects.exists()


def test_the_admin_is_for_superusers_with_searchable_read_only_lists():
    bundle = make_key(credits="1")
    superuser = get_user_model().objects.create_superuser(username="root", email="root@example.com", password="x")
    client = client_for(superuser)
    for model in ("accounts/account", "accounts/apikey", "accounts/providerkey", "accounts/auditentry",
                  "activity/generation", "billing/purchase", "billing/ledgerentry", "routing/provider",
                  "routing/model", "routing/endpoint"):
        response = client.get(f"/admin/{model}/", {"q": bundle.account.owner.email})
        assert response.status_code == 200, model
    assert bundle.account.public_id in client.get("/admin/accounts/account/", {"q": bundle.account.owner.email}).content.decode()
    lead = make_staff("lead")
    lead.is_staff = True
    lead.save()
    assert client_for(lead).get("/admin/accounts/account/").status_code == 302  # to the admin's login: not for staff roles


def test_search_by_purchase_and_crypto_charge_and_a_csv_never_carries_a_formula():
    from billing import services as billing_services

    account = make_account(credits="1")
    purchase = billing_services.crypto_purchase_start(account=account, amount="7")
    client = client_for(make_staff())
    for query in (purchase.crypto_charge_id, f"  {purchase.crypto_charge_id} "):
        response = client.get(reverse("staff:search"), {"q": query})
        assert response.status_code == 302 and response.url == account_url(account), query
    response = client.get(reverse("staff:search"), {"q": str(purchase.id)})  # a purchase id (maybe an account id too)
    assert response.status_code == 302 or account.public_id in response.content.decode()
    post_action(client, account_url(account, "note"), note="=HYPERLINK(\"http://evil\")")
    rows = list(csv.reader(io.StringIO(client.get(reverse("staff:audit"), {"format": "csv"}).content.decode())))
    assert rows[1][9] == "'=HYPERLINK(\"http://evil\")"


def test_the_staff_role_command_gives_and_takes_the_console():
    from django.core.management import CommandError, call_command

    account = make_account(credits="1")
    owner = account.owner
    call_command("staff_role", owner.email, "support", stdout=io.StringIO())
    assert client_for(get_user_model().objects.get(id=owner.id)).get(reverse("staff:search")).status_code == 200
    call_command("staff_role", owner.email.upper(), "none", stdout=io.StringIO())
    assert client_for(get_user_model().objects.get(id=owner.id)).get(reverse("staff:search")).status_code == 404
    with pytest.raises(CommandError, match="No user"):
        call_command("staff_role", "ghost@example.com", "lead")
