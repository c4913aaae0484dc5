"""Abuse limits that cannot be walked around: per client, per mailbox, per domain, the portal's
own mail ceiling, and the lookup. Each refusal is a 429 that says when to come back."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from requests_app.models import DelistRequest, Mail, MailWindow
from tests.conftest import LISTED_IP, UNLISTED_IP

# A fixed instant: Retry-After is computed from it, whatever the time of day.
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def submit(client, email, ip=LISTED_IP, client_ip="198.51.100.7"):
    return client.post(reverse("requests:submit"), {"email": email, "ip": ip}, REMOTE_ADDR=client_ip)


def confirmations() -> int:
    return Mail.objects.filter(kind=Mail.Kind.CONFIRMATION).count()


@pytest.fixture(autouse=True)
def _frozen(one_instant):
    """Every test here counts requests against limits: at one instant (tests that need the clock
    to move travel on from it)."""


@pytest.fixture
def roomy(settings):
    """Every limit out of the way but the one a test sets."""
    settings.DELIST_SUBMIT_RATE = "1000/h"
    settings.DELIST_MAILBOX_RATE = "1000/h"
    settings.DELIST_DOMAIN_RATE = "1000/h"
    settings.DELIST_MAIL_RATE = "1000/h"
    return settings


def spellings(n: int) -> list[str]:
    forms = [
        "Postmaster@Mail.Example.COM",
        "postmaster+{}@mail.example.com",
        "POSTMASTER+x{}@MAIL.example.com",
    ]
    return [forms[i % 3].format(i) for i in range(n)]


def test_fifteen_spellings_of_one_mailbox_from_fifteen_clients_get_the_mailbox_limit(client, listed, roomy):
    roomy.DELIST_MAILBOX_RATE = "5/h"
    answers = [
        submit(client, email, client_ip=f"198.51.100.{i + 1}").status_code
        for i, email in enumerate(spellings(15))
    ]
    assert answers == [302] * 5 + [429] * 10
    assert confirmations() == 5
    assert set(DelistRequest.objects.values_list("mailbox", flat=True)) == {"postmaster@mail.example.com"}


def test_the_mailbox_limit_answers_429_with_retry_after_and_says_when(client, listed, roomy):
    roomy.DELIST_MAILBOX_RATE = "2/h"
    with time_machine.travel(NOON, tick=False) as clock:
        assert submit(client, "a@mail.example.com").status_code == 302
        clock.shift(timedelta(minutes=10))
        assert submit(client, "a+2@mail.example.com").status_code == 302
        clock.shift(timedelta(minutes=5))
        response = submit(client, "A@mail.example.com")
    assert response.status_code == 429
    # The first mail leaves the hour's window at 13:00, 45 minutes from now.
    assert response["Retry-After"] == str(45 * 60)
    html = response.content.decode()
    assert "sent several confirmation links to this email address" in html
    assert "try again after 2 March 2026, 13:00 UTC" in html
    assert confirmations() == 2


def test_many_mailboxes_at_one_domain_from_many_clients_are_bounded(client, listed, roomy):
    roomy.DELIST_DOMAIN_RATE = "4/h"
    answers = [
        submit(client, f"user{i}@target.example.net", client_ip=f"2001:db8:{i}::1").status_code
        for i in range(7)
    ]
    assert answers == [302] * 4 + [429] * 3
    assert confirmations() == 4
    refused = submit(client, "late@target.example.net", client_ip="2001:db8:99::1")
    assert refused.status_code == 429 and 3500 <= int(refused["Retry-After"]) <= 3600
    # Another domain is not held back by it.
    assert submit(client, "user@other.example.net").status_code == 302


def test_the_portal_sends_no_more_than_its_ceiling_and_queues_nothing_past_it(client, listed, roomy):
    roomy.DELIST_MAIL_RATE = "3/h"
    with time_machine.travel(NOON + timedelta(minutes=10), tick=False):
        answers = [
            submit(client, f"p@d{i}.example.org", client_ip=f"203.0.113.{i + 1}").status_code
            for i in range(5)
        ]
        assert answers == [302] * 3 + [429] * 2
        assert confirmations() == 3 and DelistRequest.objects.count() == 3
        response = submit(client, "q@fresh.example.org", client_ip="192.0.2.99")
    # The ceiling counts in the clock's hours: this one ends at 13:00.
    assert response.status_code == 429 and response["Retry-After"] == str(50 * 60)
    assert "we hold back so that our own mail keeps arriving" in response.content.decode()
    with time_machine.travel(NOON + timedelta(hours=1), tick=False):
        assert submit(client, "q@fresh.example.org", client_ip="192.0.2.99").status_code == 302


def test_a_refusal_by_another_limit_costs_the_ceiling_nothing(client, listed, roomy):
    roomy.DELIST_MAIL_RATE = "2/h"
    roomy.DELIST_MAILBOX_RATE = "1/h"
    with time_machine.travel(NOON, tick=False):
        assert submit(client, "one@mail.example.com").status_code == 302
        for _ in range(3):
            assert submit(client, "one@mail.example.com").status_code == 429  # the mailbox's limit
        assert submit(client, "two@mail.example.com").status_code == 302
        assert submit(client, "three@mail.example.com").status_code == 429  # now the ceiling's
    assert MailWindow.objects.get().sent == 2


def test_the_sweep_forgets_windows_a_day_after_they_ended(listed, roomy):
    from requests_app import limits

    with time_machine.travel(NOON, tick=False):
        limits.mail_ceiling_reserve(now=NOON)
        limits.mail_ceiling_reserve(now=NOON - timedelta(days=2))
        assert limits.mail_windows_prune(now=NOON) == 1
    assert list(MailWindow.objects.values_list("starts_at", "sent")) == [(NOON, 1)]


def test_submissions_for_an_unlisted_ip_never_lock_out_the_rightful_sender(client, listed, roomy):
    roomy.DELIST_MAILBOX_RATE = "2/h"
    roomy.DELIST_DOMAIN_RATE = "2/h"
    roomy.DELIST_MAIL_RATE = "2/h"
    for i in range(10):  # a stranger, over and over, for an IP that is not listed
        assert (
            submit(client, "victim@mail.example.com", ip=UNLISTED_IP, client_ip=f"192.0.2.{i}").status_code
            == 400  # "not on our blocklist", beside the field
        )
    assert confirmations() == 0
    assert submit(client, "victim@mail.example.com", client_ip="198.51.100.50").status_code == 302
    assert confirmations() == 1


def test_the_mail_limits_hold_when_the_cache_is_flushed(client, listed, roomy):
    roomy.DELIST_MAILBOX_RATE = "2/h"
    for _ in range(2):
        assert submit(client, "a@mail.example.com").status_code == 302
        cache.clear()
    assert submit(client, "a@mail.example.com").status_code == 429
    assert confirmations() == 2


def test_the_per_client_limit_counts_ipv6_clients_per_64(client, listed, roomy):
    roomy.DELIST_SUBMIT_RATE = "2/h"
    same_64 = ["2001:db8:5:6::1", "2001:db8:5:6:ffff::2", "2001:db8:5:6:1:2:3:4"]
    answers = [
        submit(client, f"u{i}@mail{i}.example.com", client_ip=ip).status_code for i, ip in enumerate(same_64)
    ]
    assert answers == [302, 302, 429]
    refused = submit(client, "v@mailv.example.com", client_ip="2001:db8:5:6::abcd")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    # The next /64 over is another client.
    assert submit(client, "w@mailw.example.com", client_ip="2001:db8:5:7::1").status_code == 302


def test_the_ipv6_bucket_size_is_a_setting(client, listed, roomy):
    roomy.DELIST_SUBMIT_RATE = "1/h"
    roomy.RATELIMIT_IPV6_MASK = 128
    assert submit(client, "a@a.example.com", client_ip="2001:db8:5:6::1").status_code == 302
    assert submit(client, "b@b.example.com", client_ip="2001:db8:5:6::2").status_code == 302


def test_ipv4_clients_are_counted_per_address(client, listed, roomy):
    roomy.DELIST_SUBMIT_RATE = "1/h"
    assert submit(client, "a@a.example.com", client_ip="198.51.100.1").status_code == 302
    assert submit(client, "b@b.example.com", client_ip="198.51.100.2").status_code == 302
    response = submit(client, "c@c.example.com", client_ip="198.51.100.1")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


def test_the_lookup_is_limited_too(client, listed, settings):
    settings.DELIST_LOOKUP_RATE = "3/m"
    answers = [client.get("/", {"ip": LISTED_IP}).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    response = client.get("/", {"ip": LISTED_IP})
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Nothing was sent. Please try again after" in response.content.decode()
    assert client.get("/").status_code == 200  # the start page itself stays open


def test_the_api_lookup_answers_429_with_retry_after(client, listed, settings):
    settings.DELIST_API_RATE = "2/m"
    url = reverse("blocklist:api_ip", args=[LISTED_IP])
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    response = client.get(url)
    assert response.status_code == 429
    assert response.json()["retry_after"] == int(response["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "email, message",
    [
        ("x@[10.0.0.5]", "not at an IP address"),
        ("x@[IPv6:2001:db8::1]", "not at an IP address"),
        ("postmaster@localhost", "not at localhost"),
        ("postmaster@mail.localhost", "not at localhost"),
        ("postmaster@mailhost", "not a single name"),
    ],
)
def test_mail_goes_only_to_real_mailboxes(client, listed, email, message):
    response = submit(client, email)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert DelistRequest.objects.count() == 0 and confirmations() == 0


@pytest.mark.parametrize(
    "email", ["postmaster@example.com", "abuse@mail.example.org", "a@xn--bcher-kva.example"]
)
def test_ordinary_domains_stay_accepted(client, listed, email):
    assert submit(client, email).status_code == 302


def eight_at_once(email_of) -> list[int]:
    """Eight submissions from eight clients released together, each on its own connection;
    their status codes."""
    from django.test import Client

    barrier = threading.Barrier(8)
    answers = []

    def sender(i: int):
        try:
            barrier.wait()
            answers.append(submit(Client(), email_of(i), client_ip=f"198.51.100.{i}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(answers)


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_cannot_squeeze_past_the_mailbox_limit(listing, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrency; SQLite serialises writers anyway")
    settings.DELIST_SUBMIT_RATE = "1000/h"
    settings.DELIST_MAILBOX_RATE = "3/h"
    listing(LISTED_IP)
    assert eight_at_once(lambda i: f"postmaster+{i}@mail.example.com") == [302] * 3 + [429] * 5
    assert confirmations() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_cannot_squeeze_past_the_ceiling(listing, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrency; SQLite serialises writers anyway")
    settings.DELIST_SUBMIT_RATE = "1000/h"
    settings.DELIST_MAIL_RATE = "3/h"
    listing(LISTED_IP)
    with time_machine.travel(NOON, tick=False):
        # Every mailbox and domain its own: only the shared ceiling orders them.
        answers = eight_at_once(lambda i: f"p@mail{i}.example.com")
    assert answers == [302] * 3 + [429] * 5
    assert confirmations() == 3 and DelistRequest.objects.count() == 3
    assert MailWindow.objects.get().sent == 3
