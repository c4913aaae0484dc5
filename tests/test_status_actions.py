"""What a sender can do from the status page: have the link sent again, cancel a request that
waits for confirmation, withdraw one before it is due. Each refusal is a page that says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from blocklist.models import Entry, Event
from requests_app import policy, services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER, confirmation_link, link_path, open_link


@pytest.fixture
def submitted(client, listed, mailoutbox, django_capture_on_commit_callbacks):
    """A pending request whose confirmation mail went out; (request, status URL)."""

    def make(ip=LISTED_IP, email=SENDER):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("requests:submit"), {"email": email, "ip": ip})
        request = DelistRequest.objects.latest("created_at")
        return request, response["Location"]

    return make


def action_url(request: DelistRequest, action: str) -> str:
    return reverse(f"requests:status_{action}", args=[request.status_key])


def post(client, request, action, capture):
    with capture(execute=True):
        return client.post(action_url(request, action))


def test_the_link_can_be_sent_again_and_only_the_new_one_works(
    client, submitted, mailoutbox, django_capture_on_commit_callbacks
):
    request, status = submitted()
    first_link = link_path(confirmation_link(mailoutbox[-1]))
    assert "Send the link again" in client.get(status).content.decode()

    with time_machine.travel(timezone.now() + timedelta(minutes=3), tick=False):
        response = post(client, request, "resend", django_capture_on_commit_callbacks)
        assert response.status_code == 302 and response["Location"].endswith("?done=resent")
        assert "We are sending a new confirmation link" in client.get(response["Location"]).content.decode()
        assert len(mailoutbox) == 2
        second_link = link_path(confirmation_link(mailoutbox[-1]))
        assert second_link != first_link
        # The old link no longer confirms anything; the new one does, with a fresh lifetime.
        assert client.get(first_link).status_code == 404
        request.refresh_from_db()
        assert request.token_expires_at == timezone.now() + timedelta(seconds=3600)
        confirm_page = open_link(client, second_link)
        request_id = confirm_page.rsplit("=", 1)[1]
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:confirm"), {"request": request_id})
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert request.events.filter(action=Event.Action.LINK_RESENT, actor="sender").exists()


def test_sending_again_right_away_is_refused_and_says_when(
    client, submitted, mailoutbox, django_capture_on_commit_callbacks
):
    request, _status = submitted()
    response = post(client, request, "resend", django_capture_on_commit_callbacks)
    assert response.status_code == 429 and int(response["Retry-After"]) <= 120
    assert "only a moment ago" in response.content.decode()
    assert len(mailoutbox) == 1


def test_sending_again_counts_against_the_mailbox_limit(
    client, submitted, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_MAILBOX_RATE = "1/h"
    request, _status = submitted()
    with time_machine.travel(timezone.now() + timedelta(minutes=3), tick=False):
        response = post(client, request, "resend", django_capture_on_commit_callbacks)
    assert response.status_code == 429 and int(response["Retry-After"]) > 3000
    assert "as many confirmation mails as we may" in response.content.decode()
    assert len(mailoutbox) == 1 and Mail.objects.count() == 1


def test_sending_again_shares_the_clients_submission_rate(
    client, submitted, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_SUBMIT_RATE = "1/h"
    # One frozen instant for both: the per-client window has an edge somewhere in each hour, and
    # a clock that moved on between the two posts could cross it.
    with time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False):
        request, _status = submitted()
        # The first mail went out long enough ago for a second one (RESEND_AFTER).
        Mail.objects.filter(request=request).update(sent_at=timezone.now() - timedelta(minutes=3))
        response = post(client, request, "resend", django_capture_on_commit_callbacks)
    assert response.status_code == 429
    assert "Too many requests from your network" in response.content.decode()
    assert len(mailoutbox) == 1


def test_sending_again_waits_while_the_first_mail_is_still_owed(client, listed, mailoutbox):
    # The on-commit queueing never runs: the mail is owed, as when SMTP is down.
    client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    request = DelistRequest.objects.get()
    response = client.post(action_url(request, "resend"))
    assert response.status_code == 409
    assert "still trying to deliver the first mail" in response.content.decode()
    assert Mail.objects.count() == 1


def test_a_pending_request_can_be_cancelled_and_its_link_then_says_so(
    client, submitted, mailoutbox, django_capture_on_commit_callbacks
):
    request, status = submitted()
    link = link_path(confirmation_link(mailoutbox[-1]))
    response = post(client, request, "cancel", django_capture_on_commit_callbacks)
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The request is cancelled" in page and "Cancelled by you" in page
    request.refresh_from_db()
    assert request.state == State.CANCELLED and request.token_hash is None and request.closed_at
    assert request.events.filter(action=Event.Action.CANCELLED, actor="sender").exists()
    gone = client.get(link)
    assert gone.status_code == 410 and "This request was cancelled" in gone.content.decode()
    again = post(client, request, "cancel", django_capture_on_commit_callbacks)
    assert again.status_code == 409 and "no longer waits for confirmation" in again.content.decode()
    assert "Send the link again" not in client.get(status).content.decode()


def test_an_approved_request_can_be_withdrawn_before_it_is_due(
    client, confirmed, django_capture_on_commit_callbacks
):
    request = confirmed(LISTED_IP)
    status = reverse("requests:status", args=[request.status_key])
    assert "Withdraw this request" in client.get(status).content.decode()
    response = post(client, request, "withdraw", django_capture_on_commit_callbacks)
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Nothing was delisted" in page and "Withdrawn by you" in page
    request.refresh_from_db()
    assert request.state == State.WITHDRAWN and request.effective_at is None
    assert request.events.filter(action=Event.Action.WITHDRAWN, actor="sender").exists()
    services.sweep(now=timezone.now() + timedelta(days=1))
    assert Entry.objects.get(network=f"{LISTED_IP}/32").is_active()
    # Nothing was delisted: the self-service ladder does not count it.
    assert policy.self_service_delistings(LISTED_IP, since=timezone.now() - timedelta(days=1)) == 0


def test_a_request_in_review_can_be_withdrawn(client, confirmed, django_capture_on_commit_callbacks):
    request = confirmed(IN_RANGE_IP)
    assert post(client, request, "withdraw", django_capture_on_commit_callbacks).status_code == 302
    assert not DelistRequest.objects.filter(state=State.NEEDS_REVIEW).exists()


def test_a_due_request_can_no_longer_be_withdrawn(client, confirmed, django_capture_on_commit_callbacks):
    request = confirmed(LISTED_IP)
    with time_machine.travel(request.effective_at + timedelta(seconds=1), tick=False):
        response = post(client, request, "withdraw", django_capture_on_commit_callbacks)
    assert response.status_code == 409 and "already due" in response.content.decode()
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_a_completed_request_cannot_be_withdrawn(client, confirmed, django_capture_on_commit_callbacks):
    request = confirmed(LISTED_IP)
    services.sweep(now=request.effective_at)
    response = post(client, request, "withdraw", django_capture_on_commit_callbacks)
    assert response.status_code == 409 and "already done" in response.content.decode()
    request.refresh_from_db()
    assert request.state == State.COMPLETED


def test_a_pending_request_cannot_be_withdrawn(client, submitted, django_capture_on_commit_callbacks):
    request, _status = submitted()
    response = post(client, request, "withdraw", django_capture_on_commit_callbacks)
    assert response.status_code == 409 and "Only a request in review" in response.content.decode()
    request.refresh_from_db()
    assert request.state == State.PENDING


@pytest.mark.parametrize("action", ["resend", "cancel", "withdraw"])
def test_the_actions_need_the_pages_csrf_token(submitted, action):
    request, _status = submitted()
    browser = Client(enforce_csrf_checks=True)
    assert browser.post(action_url(request, action)).status_code == 403
    request.refresh_from_db()
    assert request.state == State.PENDING and Mail.objects.count() == 1


@pytest.mark.parametrize("action", ["resend", "cancel", "withdraw"])
def test_the_actions_take_only_a_post_and_a_real_key(client, submitted, action):
    request, _status = submitted()
    assert client.get(action_url(request, action)).status_code == 405
    assert client.post(reverse(f"requests:status_{action}", args=["x" * 22])).status_code == 404
    assert client.post(reverse(f"requests:status_{action}", args=["bad\x00key"])).status_code == 404
    request.refresh_from_db()
    assert request.state == State.PENDING
