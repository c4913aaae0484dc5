"""Each path told up front and each result told honestly: who delists the IP and when, where it
stands on the self-service ladder, and whether anything still covers it."""

from __future__ import annotations

from django.urls import reverse

from blocklist.ip import parse_network
from blocklist.services import entries_delist, entry_list, entry_relist
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.conftest import (
    IN_RANGE_IP,
    LISTED_IP,
    SENDER,
    confirmation_link,
    link_path,
    open_link,
    press_delist_button,
)


def page(client, request: DelistRequest) -> str:
    response = client.get(reverse("requests:status", args=[request.status_key]))
    return " ".join(response.content.decode().split())


def submit(client, ip, capture, email=SENDER) -> DelistRequest:
    with capture(execute=True):
        client.post(reverse("requests:submit"), {"email": email, "ip": ip})
    return DelistRequest.objects.latest("created_at")


def confirm_page(client, mailoutbox) -> str:
    response = client.get(open_link(client, link_path(confirmation_link(mailoutbox[-1]))))
    return " ".join(response.content.decode().split())


def test_a_self_service_request_is_told_it_delists_itself_and_its_place_on_the_ladder(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    request = submit(client, LISTED_IP, django_capture_on_commit_callbacks)
    text = page(client, request)
    assert "Delisted by itself:" in text and "removed about 1 hour later" in text
    assert "delisting 1 of 3 allowed for this IP in 90 days; after that a reviewer decides" in text
    assert "self-service delisting 1 of 3" in confirm_page(client, mailoutbox)


def test_the_second_self_service_delisting_is_told_as_the_second(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(client, LISTED_IP, django_capture_on_commit_callbacks)
        press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
    first.refresh_from_db()
    assert "This is self-service delisting 1 of 3" in page(client, first)
    services.sweep(now=first.effective_at)
    entry_relist(first.entries.get(), actor="trap")
    submit(client, LISTED_IP, django_capture_on_commit_callbacks, email="other@mail.example.com")
    assert "This would be self-service delisting 2 of 3" in confirm_page(client, mailoutbox)


def test_a_used_up_ladder_is_told_with_the_right_plurals(
    client, listing, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_SELF_SERVICE_LIMIT = 1
    settings.DELIST_SELF_SERVICE_WINDOW_DAYS = 1
    entry = listing(LISTED_IP)
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, LISTED_IP, django_capture_on_commit_callbacks)
        press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
    first = DelistRequest.objects.get()
    services.sweep(now=first.effective_at)
    entry_relist(entry, actor="trap")
    second = submit(client, LISTED_IP, django_capture_on_commit_callbacks, email="other@mail.example.com")
    text = page(client, second)
    assert "Decided by a reviewer:" in text
    assert "already delisted by self-service 1 time in one day, the most we allow" in text


def test_a_range_is_told_a_reviewer_decides_and_why(client, listed, django_capture_on_commit_callbacks):
    request = submit(client, IN_RANGE_IP, django_capture_on_commit_callbacks)
    text = page(client, request)
    assert "Decided by a reviewer:" in text and "covers more addresses than this one" in text
    assert "If they approve, the IP is removed about 1 hour later" in text


def test_a_delisting_looks_like_success_in_more_than_colour(client, confirmed):
    request = confirmed(LISTED_IP)
    services.sweep(now=request.effective_at)
    text = page(client, request)
    assert 'class="notice notice-ok"' in text and "✓" in text and "Delisted at" in text
    assert "Nothing on our list covers this IP any more" in text and "Removed from the blocklist" in text


def test_an_entry_listed_after_confirmation_is_told_instead_of_removed(
    client, confirmed, mailoutbox, django_capture_on_commit_callbacks
):
    request = confirmed(LISTED_IP)
    entry_list(parse_network("5.61.14.0/24"), actor="trap", reason="snowshoe spam")
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep(now=request.effective_at)
    request.refresh_from_db()
    assert request.state == State.COMPLETED
    text = page(client, request)
    assert "notice-warn" in text and "Still listed." in text and "5.61.14.0/24: snowshoe spam" in text
    assert "Still listed by another entry" in text and "Removed from the blocklist" not in text
    done = mailoutbox[-1]
    assert done.subject == f"{LISTED_IP} is still listed by another entry"
    assert "5.61.14.0/24" in done.body and "was removed" not in done.body


def test_the_completion_mail_says_removed_when_nothing_covers_it(
    confirmed, mailoutbox, django_capture_on_commit_callbacks
):
    request = confirmed(LISTED_IP)
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep(now=request.effective_at)
    assert mailoutbox[-1].subject == f"{LISTED_IP} has been removed from our blocklist"


def test_a_request_for_an_ip_no_longer_listed_says_so_and_cannot_be_confirmed(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    request = submit(client, LISTED_IP, django_capture_on_commit_callbacks)
    entries_delist([listed["single"].pk], actor="admin")
    assert "This IP is no longer on our list." in page(client, request)
    link = link_path(confirmation_link(mailoutbox[-1]))
    text = confirm_page(client, mailoutbox)
    assert "no longer on our list" in text and "Delist IP</button>" not in text
    response = press_delist_button(client, link)
    assert response.status_code == 410 and "nothing to confirm" in response.content.decode()
    request.refresh_from_db()
    assert request.state == State.PENDING and request.decided_by == ""


def test_an_approved_request_shows_a_countdown_and_a_reload_hint_when_close(client, confirmed, settings):
    settings.DELIST_PROPAGATION_DELAY = 300
    request = confirmed(LISTED_IP)
    text = page(client, request)
    assert f'data-countdown="{int(request.effective_at.timestamp())}"' in text
    assert 'role="timer"' in text and "js/countdown.js" in text
    assert "reload this page after" in text


def test_a_distant_removal_gives_no_reload_hint(client, confirmed):
    request = confirmed(LISTED_IP)  # an hour ahead
    assert "reload this page after" not in page(client, request)
