"""Every page a sender can reach is valid HTML as the Nu Html Checker reads it: the status page
in every state, the confirmation page, each page of a link that no longer works, the 404 page
and the refusals. Each page is reached through the real services, on a frozen clock whose
microseconds would show in any <time datetime> not written to the second."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from blocklist.ip import parse_network
from blocklist.services import entries_delist, entry_list
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.conftest import LISTED_RANGE, confirmation_link, link_path, open_link
from tests.html_checker import html_errors, needs_checker

NOW = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)  # microseconds, as real clocks have
REVIEWER = "reviewer"
# Each request has an address of its own, so none supersedes or joins another unless meant to.
SINGLES = {
    "pending": "5.61.14.1",
    "approved": "5.61.14.2",
    "completed": "5.61.14.3",
    "expired": "5.61.14.4",
    "superseded": "5.61.14.5",
    "cancelled": "5.61.14.6",
    "withdrawn": "5.61.14.7",
    "revoked": "5.61.14.8",
    "not-listed": "5.61.14.9",
    "still-listed": "5.61.15.7",
}
IN_REVIEW_IP = "37.120.8.9"
REJECTED_IP = "37.120.8.10"
# What each page answers: a refusal or a dead link is not a 200, and must not pass as one.
EXPECTED_STATUS = {
    "status-pending": 200,
    "status-pending-resend-refused": 429,
    "status-cancel-refused": 409,
    "status-needs-review": 200,
    "status-approved-countdown": 200,
    "status-completed": 200,
    "status-completed-still-listed": 200,
    "status-rejected": 200,
    "status-rejected-revoked": 200,
    "status-expired": 200,
    "status-superseded": 200,
    "status-cancelled": 200,
    "status-withdrawn": 200,
    "status-merged-in-review": 200,
    "status-merged-approved": 200,
    "status-merged-completed": 200,
    "confirm": 200,
    "confirm-joins-approved": 200,
    "confirm-not-listed": 200,
    "link-used": 410,
    "link-expired": 410,
    "link-superseded": 410,
    "link-cancelled": 410,
    "link-unknown": 404,
    "not-found": 404,
    "start-too-many": 429,
    "submit-bad": 400,
}


class Walk:
    """A sender's browser on the real pages: submits, follows the emailed link, presses the button."""

    def __init__(self, client, mailoutbox, capture):
        self.client, self.mailoutbox, self.capture = client, mailoutbox, capture
        self.senders = 0

    def submit(self, ip: str, email: str = "") -> tuple[DelistRequest, str]:
        """A new request (a mailbox of its own unless email is given); (request, its link)."""
        self.senders += 1
        email = email or f"postmaster{self.senders}@mail.example.com"
        with self.capture(execute=True):
            response = self.client.post(reverse("requests:submit"), {"email": email, "ip": ip})
        assert response.status_code == 302, response.content.decode()[:500]
        return DelistRequest.objects.latest("pk"), link_path(confirmation_link(self.mailoutbox[-1]))

    def confirm(self, request: DelistRequest, link: str) -> DelistRequest:
        """Opens the link and presses Delist IP."""
        open_link(self.client, link)
        with self.capture(execute=True):
            self.client.post(reverse("requests:confirm"), {"request": str(request.pk)})
        request.refresh_from_db()
        return request

    def confirmed(self, ip: str) -> DelistRequest:
        return self.confirm(*self.submit(ip))

    def status(self, request: DelistRequest, state: str):
        request.refresh_from_db()
        assert request.state == state, f"request {request.pk} is {request.state}, not {state}"
        return self.client.get(reverse("requests:status", args=[request.status_key]))

    def action(self, request: DelistRequest, action: str):
        with self.capture(execute=True):
            return self.client.post(reverse(f"requests:status_{action}", args=[request.status_key]))

    def confirm_page(self, link: str):
        return self.client.get(open_link(self.client, link))


@pytest.fixture
def walk(db, client, mailoutbox, django_capture_on_commit_callbacks, settings):
    # db before mailoutbox: setting up the database gives mail.outbox a new list.
    settings.DELIST_PROPAGATION_DELAY = 300  # near enough for the reload hint under the countdown
    settings.DELIST_SUBMIT_RATE = "100/h"  # one client submits every request here
    settings.DELIST_LOOKUP_RATE = "1/m"  # the second lookup is refused
    settings.DEBUG = False  # the portal's own 404 page
    return Walk(client, mailoutbox, django_capture_on_commit_callbacks)


def sender_pages(walk: Walk, listing, traveller) -> dict[str, object]:
    """Every page a sender can reach, each rendered at the moment its state holds."""
    entries = {
        name: listing(ip, reason=f"spam trap hits ({name})", expires_at=NOW + timedelta(days=30))
        for name, ip in SINGLES.items()
    }
    listing(LISTED_RANGE, reason="snowshoe spam")
    client = walk.client
    pages = {}

    # Waiting for confirmation: the status page, the confirmation page, the refusals.
    pending, pending_link = walk.submit(SINGLES["pending"])
    pages["status-pending"] = walk.status(pending, State.PENDING)
    pages["status-pending-resend-refused"] = walk.action(pending, "resend")  # too soon after the first
    pages["confirm"] = walk.confirm_page(pending_link)
    _not_listed, not_listed_link = walk.submit(SINGLES["not-listed"])
    entries_delist([entries["not-listed"].pk], actor="admin")
    pages["confirm-not-listed"] = walk.confirm_page(not_listed_link)

    superseded, superseded_link = walk.submit(SINGLES["superseded"], email="twice@mail.example.com")
    walk.submit(SINGLES["superseded"], email="twice@mail.example.com")
    pages["status-superseded"] = walk.status(superseded, State.SUPERSEDED)
    pages["link-superseded"] = client.get(superseded_link)

    cancelled, cancelled_link = walk.submit(SINGLES["cancelled"])
    assert walk.action(cancelled, "cancel").status_code == 302
    pages["status-cancelled"] = walk.status(cancelled, State.CANCELLED)
    pages["status-cancel-refused"] = walk.action(cancelled, "cancel")
    pages["link-cancelled"] = client.get(cancelled_link)

    expiring, expiring_link = walk.submit(SINGLES["expired"])

    # Confirmed: approved with its countdown, in review, joined, withdrawn, rejected, revoked.
    traveller.shift(timedelta(minutes=2))
    approved, approved_link = walk.submit(SINGLES["approved"])
    walk.confirm(approved, approved_link)
    pages["status-approved-countdown"] = walk.status(approved, State.APPROVED)
    pages["link-used"] = client.get(approved_link)
    joining, joining_link = walk.submit(SINGLES["approved"])
    pages["confirm-joins-approved"] = walk.confirm_page(joining_link)
    walk.confirm(joining, joining_link)
    pages["status-merged-approved"] = walk.status(joining, State.MERGED)

    in_review = walk.confirmed(IN_REVIEW_IP)
    pages["status-needs-review"] = walk.status(in_review, State.NEEDS_REVIEW)
    merged = walk.confirmed(IN_REVIEW_IP)
    pages["status-merged-in-review"] = walk.status(merged, State.MERGED)

    withdrawn = walk.confirmed(SINGLES["withdrawn"])
    assert walk.action(withdrawn, "withdraw").status_code == 302
    pages["status-withdrawn"] = walk.status(withdrawn, State.WITHDRAWN)

    rejected = walk.confirmed(REJECTED_IP)
    assert services.request_reject(request=rejected, actor=REVIEWER, reason="The range still sends spam.")
    pages["status-rejected"] = walk.status(rejected, State.REJECTED)
    revoked = walk.confirmed(SINGLES["revoked"])
    assert services.request_revoke(request=revoked, actor=REVIEWER, reason="Listed again:\nnew trap hits.")
    pages["status-rejected-revoked"] = walk.status(revoked, State.REJECTED)

    # Delisted: once with nothing left covering the IP, once with an entry listed since.
    completed = walk.confirmed(SINGLES["completed"])
    still_listed = walk.confirmed(SINGLES["still-listed"])
    entry_list(parse_network("5.61.15.0/24"), actor="trap", reason="snowshoe spam")
    traveller.move_to(completed.effective_at, tick=False)
    with walk.capture(execute=True):
        services.sweep()
    pages["status-completed"] = walk.status(completed, State.COMPLETED)
    pages["status-completed-still-listed"] = walk.status(still_listed, State.COMPLETED)
    pages["status-merged-completed"] = walk.status(joining, State.MERGED)

    # The unused link has run out.
    traveller.move_to(NOW + timedelta(hours=2), tick=False)
    services.sweep()
    pages["status-expired"] = walk.status(expiring, State.EXPIRED)
    pages["link-expired"] = client.get(expiring_link)

    # Pages of no request at all.
    pages["link-unknown"] = client.get(reverse("requests:confirm_link", args=["x" * 22 + "." + "y" * 43]))
    pages["not-found"] = client.get("/status/no-such-request")
    client.get(reverse("requests:home"), {"ip": SINGLES["pending"]})
    pages["start-too-many"] = client.get(reverse("requests:home"), {"ip": SINGLES["pending"]})
    pages["submit-bad"] = client.post(reverse("requests:submit"), {"email": "nope", "ip": "5.61.14.07"})
    return pages


@pytest.fixture
def pages(walk, listing):
    with time_machine.travel(NOW, tick=False) as traveller:
        yield sender_pages(walk, listing, traveller)


def test_each_page_is_the_one_it_claims_to_be(pages):
    assert {name: response.status_code for name, response in pages.items()} == EXPECTED_STATUS


def test_the_status_page_is_seen_in_every_state(pages):
    states = {
        response.context["delist_request"].state for name, response in pages.items() if "status-" in name
    }
    assert states == set(State.values)


def test_every_time_element_carries_a_datetime_to_the_second_in_utc(pages):
    for name, response in pages.items():
        for value in re.findall(r'<time[^>]* datetime="([^"]*)"', response.content.decode()):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), f"{name}: {value}"


@needs_checker
def test_every_sender_page_is_valid_html_to_the_nu_html_checker(pages, tmp_path):
    errors = html_errors({name: response.content for name, response in pages.items()}, tmp_path)
    assert not errors, "\n".join(errors)
