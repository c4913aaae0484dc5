"""Submitting the form: one email and one IP, a clear answer for every input."""

import pytest
from django.urls import reverse

from requests_app.models import DelistRequest, Mail, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER, UNLISTED_IP, confirmation_link


def submit(client, email=SENDER, ip=LISTED_IP, **extra):
    return client.post(reverse("requests:submit"), {"email": email, "ip": ip}, **extra)


def test_it_creates_a_request_and_mails_a_confirmation_link(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client)
    request = DelistRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("requests:status", args=[request.status_key])
    assert request.state == State.PENDING
    assert request.ip == LISTED_IP and request.email == SENDER
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [SENDER]
    assert LISTED_IP in message.subject
    assert confirmation_link(message).startswith("https://delist.example.org/confirm/")
    assert Mail.objects.get().sent_at is not None

    page = client.get(response["Location"])
    assert "Check your inbox" in page.content.decode()


def test_the_status_page_link_is_unguessable(client, listed, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        submit(client)
    assert len(DelistRequest.objects.get().status_key) >= 22  # 128 bits, URL-safe
    assert client.get(reverse("requests:status", args=["nope"])).status_code == 404


def test_an_unlisted_ip_is_told_so_and_nothing_is_sent(client, listed, mailoutbox):
    response = submit(client, ip=UNLISTED_IP)
    assert response.status_code == 400  # told beside the field, like any reason nothing was sent
    assert f"{UNLISTED_IP} is not on our blocklist" in response.content.decode()
    assert response.context["delist_form"].has_error("ip", code="not_listed")
    assert DelistRequest.objects.count() == 0
    assert mailoutbox == []


@pytest.mark.parametrize(
    ("email", "ip", "field", "message"),
    [
        ("not-an-address", LISTED_IP, "email", "Enter a valid email address"),
        ("", LISTED_IP, "email", "This field is required"),
        (SENDER, "5.61.14.07", "ip", "has a leading zero in “07”"),
        (SENDER, "10.0.0.1", "ip", "is not a public address"),
        (SENDER, "37.120.8.0/24", "ip", "not a network"),
        (SENDER, "", "ip", "This field is required"),
        (SENDER, "x " * 250, "ip", "We found no IP address in what you pasted"),
        (SENDER, "x" * 1001, "ip", "at most 1000 characters"),
    ],
)
def test_a_malformed_email_or_ip_gives_a_form_error_and_creates_nothing(
    client, listed, mailoutbox, email, ip, field, message
):
    response = submit(client, email=email, ip=ip)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert field in response.context["delist_form"].errors
    assert DelistRequest.objects.count() == 0
    assert mailoutbox == []


def test_two_emails_in_one_field_are_refused(client, listed):
    response = submit(client, email=f"{SENDER}, other@example.com")
    assert response.status_code == 400
    assert DelistRequest.objects.count() == 0


def test_a_new_submission_supersedes_the_pending_one(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(client)
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, email=SENDER.upper())
    first, second = DelistRequest.objects.order_by("created_at")
    assert first.state == State.SUPERSEDED and first.superseded_by == second
    assert second.state == State.PENDING
    assert len(mailoutbox) == 2  # one mail per submission, the old link now dead

    old = client.get(confirmation_link(mailoutbox[0]).replace("https://delist.example.org", ""))
    assert old.status_code == 410
    assert "This link was replaced" in old.content.decode()


def test_a_submission_for_another_ip_leaves_the_first_pending(
    client, listed, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(client)
        submit(client, ip=IN_RANGE_IP)
    assert set(DelistRequest.objects.values_list("state", flat=True)) == {State.PENDING}


def test_submissions_are_rate_limited_per_client(
    one_instant, client, listed, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_SUBMIT_RATE = "2/h"
    with django_capture_on_commit_callbacks(execute=True):
        assert submit(client, email="a@mail.example.com").status_code == 302
        assert submit(client, email="b@mail.example.com").status_code == 302
        response = submit(client, email="c@mail.example.com")
    assert response.status_code == 429
    assert "Too many requests" in response.content.decode()
    assert DelistRequest.objects.count() == 2


def test_the_start_page_prefills_and_checks_the_ip_from_the_bounce_link(client, listed):
    response = client.get("/", {"ip": IN_RANGE_IP})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'value="{IN_RANGE_IP}"' in html
    assert f"{IN_RANGE_IP} is on our blocklist" in html
    assert "37.120.8.0/24" in html and "snowshoe spam" in html


def test_the_start_page_explains_a_bad_ip_in_the_check_form(client, db):
    response = client.get("/", {"ip": "999.1.1.1"})
    assert response.status_code == 200
    assert "is not a valid IPv4 or IPv6 address" in response.content.decode()
