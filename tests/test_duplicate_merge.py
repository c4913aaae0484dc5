"""A second confirmed request for an IP already in review or approved joins that one: one row in
the review queue, one delisting, and the second sender's page follows the first request."""

from __future__ import annotations

from django.urls import reverse

from blocklist.models import Entry, Event
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, confirmation_link, link_path, open_link

OTHER = "abuse@other.example.net"


def status_page(client, request) -> str:
    return client.get(reverse("requests:status", args=[request.status_key])).content.decode()


def test_a_second_request_for_an_ip_in_review_joins_the_first(client, confirmed):
    first = confirmed(IN_RANGE_IP)
    second = confirmed(IN_RANGE_IP, email=OTHER)
    assert first.state == State.NEEDS_REVIEW
    assert second.state == State.MERGED and second.merged_into_id == first.pk and second.closed_at
    assert DelistRequest.objects.filter(state=State.NEEDS_REVIEW).count() == 1
    assert second.events.filter(action=Event.Action.MERGED, reason=f"joined request #{first.pk}").exists()
    page = status_page(client, second)
    assert "yours joined it" in page and "The request in progress" in page and "in review" in page
    # The page follows the first request without handing out its status page (its capability).
    assert first.status_key not in page and first.masked_email not in page


def test_a_joined_request_follows_the_first_to_its_delisting(client, confirmed):
    first = confirmed(LISTED_IP)
    second = confirmed(LISTED_IP, email=OTHER)
    assert first.state == State.APPROVED and second.state == State.MERGED
    assert "will be removed at" in status_page(client, second)
    services.sweep(now=first.effective_at)
    first.refresh_from_db()
    assert first.state == State.COMPLETED
    assert "Delisted at" in status_page(client, second)
    # One delisting: the entry was delisted once, by the first request.
    assert Event.objects.filter(action=Event.Action.DELISTED).count() == 1
    assert not Entry.objects.get(network=f"{LISTED_IP}/32").is_active()


def test_the_confirmation_page_says_it_will_join(
    client, confirmed, mailoutbox, django_capture_on_commit_callbacks
):
    confirmed(IN_RANGE_IP)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": OTHER, "ip": IN_RANGE_IP})
    page = client.get(open_link(client, link_path(confirmation_link(mailoutbox[-1])))).content.decode()
    assert "Already in progress" in page and "joins it" in page


def test_a_request_others_joined_cannot_be_withdrawn(client, confirmed, django_capture_on_commit_callbacks):
    first = confirmed(LISTED_IP)
    confirmed(LISTED_IP, email=OTHER)
    assert "can no longer be withdrawn" in status_page(client, first)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("requests:status_withdraw", args=[first.status_key]))
    assert response.status_code == 409 and "joined this one" in response.content.decode()
    first.refresh_from_db()
    assert first.state == State.APPROVED


def test_a_closed_request_is_not_joined(client, confirmed):
    first = confirmed(IN_RANGE_IP)
    services.request_reject(request=first, actor="rita", reason="still spamming")
    second = confirmed(IN_RANGE_IP, email=OTHER)
    assert second.state == State.NEEDS_REVIEW


def test_a_request_for_another_ip_is_not_joined(confirmed):
    confirmed(IN_RANGE_IP)
    assert confirmed("37.120.8.10", email=OTHER).state == State.NEEDS_REVIEW


def test_the_merged_state_shows_in_the_admin(admin_client, confirmed):
    confirmed(IN_RANGE_IP)
    second = confirmed(IN_RANGE_IP, email=OTHER)
    listing = admin_client.get(reverse("admin:requests_app_delistrequest_changelist"), {"state": "merged"})
    assert listing.status_code == 200 and "joined another request" in listing.content.decode()
    change = admin_client.get(reverse("admin:requests_app_delistrequest_change", args=[second.pk]))
    assert change.status_code == 200
