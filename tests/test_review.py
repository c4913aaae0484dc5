"""The review queue: policy sends requests there; reviewers approve or reject them."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from blocklist.models import Entry, Event
from blocklist.services import entry_relist
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.conftest import (
    IN_RANGE_IP,
    LISTED_IP,
    admin_post_data,
)

QUEUE = reverse("admin:requests_app_reviewqueue_changelist")
REQUESTS = reverse("admin:requests_app_delistrequest_changelist")


@pytest.fixture
def reviewer(db):
    user = User.objects.create_user("rita", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


def test_the_queue_holds_requests_in_review_oldest_first(admin_client, confirmed, listing):
    listing("81.2.69.0/24")
    first = confirmed(IN_RANGE_IP)
    second = confirmed("81.2.69.5")
    approved = confirmed(LISTED_IP)
    assert approved.state == State.APPROVED
    response = admin_client.get(QUEUE)
    assert [r.pk for r in response.context["cl"].result_list] == [first.pk, second.pk]
    assert "a covering entry is a range" in response.content.decode()


def test_a_reviewer_approves_like_self_service(
    reviewer_client, reviewer, confirmed, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 600
    request = confirmed()
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(
            QUEUE, {"action": "approve", ACTION_CHECKBOX_NAME: [request.pk], "confirm": "yes"}
        )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert request.decided_by == "rita"
    assert request.effective_at - request.decided_at == timedelta(seconds=600)
    assert request.events.filter(action="approved", actor="rita").exists()

    services.sweep(now=request.effective_at)
    request.refresh_from_db()
    assert request.state == State.COMPLETED
    assert Entry.objects.get(network="37.120.8.0/24").delisted_at == request.effective_at


def test_rejecting_asks_for_a_reason_the_sender_sees(
    client, reviewer_client, confirmed, mailoutbox, django_capture_on_commit_callbacks
):
    # Two addresses of the range: a second request for the same one would join the first.
    requests = [confirmed(), confirmed(ip="37.120.8.10", email="other@mail.example.com")]
    ids = [r.pk for r in requests]
    ask = reviewer_client.post(QUEUE, {"action": "reject", ACTION_CHECKBOX_NAME: ids})
    assert ask.status_code == 200 and "Reason the sender will read" in ask.content.decode()
    assert DelistRequest.objects.filter(state=State.NEEDS_REVIEW).count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        reviewer_client.post(
            QUEUE, {"action": "reject", ACTION_CHECKBOX_NAME: ids, "reason": "Your relay is still open."}
        )
    for request in requests:
        request.refresh_from_db()
        assert request.state == State.REJECTED and request.decision_reason == "Your relay is still open."
        page = client.get(reverse("requests:status", args=[request.status_key])).content.decode()
        assert "Your relay is still open." in page
    rejection_mails = [m for m in mailoutbox if "not approved" in m.subject]
    assert len(rejection_mails) == 2 and "Your relay is still open." in rejection_mails[0].body
    assert Entry.objects.get(network="37.120.8.0/24").is_active()


def test_a_request_not_in_review_is_left_alone(admin_client, confirmed):
    approved = confirmed(LISTED_IP)
    effective_at = approved.effective_at
    admin_client.post(REQUESTS, {"action": "reject", ACTION_CHECKBOX_NAME: [approved.pk], "reason": "no"})
    admin_client.post(REQUESTS, {"action": "approve", ACTION_CHECKBOX_NAME: [approved.pk]})
    approved.refresh_from_db()
    assert approved.state == State.APPROVED and approved.effective_at == effective_at


def test_a_reviewer_sees_everything_but_cannot_change_an_entry(reviewer_client, listed):
    entry = listed["range"]
    url = reverse("admin:blocklist_entry_change", args=[entry.pk])
    page = reviewer_client.get(url)
    assert page.status_code == 200 and "37.120.8.0/24" in page.content.decode()
    response = reviewer_client.post(url, admin_post_data(page, code="5.7.620", reason="changed"))
    assert response.status_code == 403
    delist = reviewer_client.post(
        reverse("admin:blocklist_entry_changelist"),
        {"action": "delist", ACTION_CHECKBOX_NAME: [entry.pk], "reason": "x"},
    )
    assert delist.status_code == 200  # the action is not offered: nothing happens
    assert (
        reviewer_client.post(reverse("admin:blocklist_entry_add"), {"network": "81.2.69.1"}).status_code
        == 403
    )
    assert reviewer_client.get(reverse("admin:blocklist_entry_import")).status_code == 403
    entry.refresh_from_db()
    assert (entry.code, entry.reason, entry.delisted_at) == ("5.7.606", "snowshoe spam", None)
    for name in ("blocklist_event", "requests_app_delistrequest", "requests_app_reviewqueue"):
        assert reviewer_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_staff_without_the_review_permission_cannot_approve(client, confirmed, db):
    clerk = User.objects.create_user("carl", is_staff=True)
    clerk.user_permissions.add(
        *Group.objects.get(name="reviewer").permissions.exclude(codename="review_delistrequest")
    )
    request = confirmed()
    client.force_login(clerk)
    client.post(QUEUE, {"action": "approve", ACTION_CHECKBOX_NAME: [request.pk]})
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW


def test_a_request_page_shows_its_timeline_and_the_listings_it_covers(admin_client, confirmed):
    request = confirmed()
    html = admin_client.get(
        reverse("admin:requests_app_delistrequest_change", args=[request.pk])
    ).content.decode()
    for action in ("submitted", "confirmed", "sent to review"):
        assert action in html
    assert "37.120.8.0/24" in html and "snowshoe spam" in html


def test_past_the_self_service_limit_requests_go_to_review(confirmed, settings):
    settings.DELIST_SELF_SERVICE_LIMIT = 2
    settings.DELIST_SELF_SERVICE_WINDOW_DAYS = 30
    states = []
    for _ in range(3):
        request = confirmed(LISTED_IP)
        states.append(request.state)
        if request.state == State.APPROVED:
            services.sweep(now=request.effective_at)
            entry_relist(request.entries.get(), actor="trap")  # listed again: the problem came back
    assert states == [State.APPROVED, State.APPROVED, State.NEEDS_REVIEW]
    reason = Event.objects.filter(action="sent_to_review").get().reason
    assert "2 self-service delistings" in reason


def test_old_self_service_delistings_fall_out_of_the_window(confirmed, settings):
    settings.DELIST_SELF_SERVICE_LIMIT = 1
    first = confirmed(LISTED_IP)
    services.sweep(now=first.effective_at)
    entry_relist(first.entries.get(), actor="trap")  # listed again: the problem came back
    DelistRequest.objects.filter(pk=first.pk).update(decided_at=timezone.now() - timedelta(days=91))
    assert confirmed(LISTED_IP).state == State.APPROVED


def test_a_switch_sends_every_request_to_review(confirmed, settings):
    settings.DELIST_REVIEW_ALL = True
    assert confirmed(LISTED_IP).state == State.NEEDS_REVIEW
