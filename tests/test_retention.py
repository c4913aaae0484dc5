"""DELIST_RETENTION_DAYS after a request closed, the sweep forgets who asked and keeps what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse

from blocklist.models import Event
from requests_app import retention, services
from requests_app.limits import MailLimitReached, mail_limits_check
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import IN_RANGE_IP, LISTED_IP

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def submit(client, email: str, ip: str, capture, **extra) -> DelistRequest:
    with capture(execute=True):  # the confirmation goes out: the link's lifetime starts
        client.post(reverse("requests:submit"), {"email": email, "ip": ip}, **extra)
    return DelistRequest.objects.get(email=email, ip=ip, state=State.PENDING)


def reject(request: DelistRequest, reason: str) -> None:
    assert services.request_reject(request=request, actor="desk", reason=reason)


@pytest.fixture
def closed_and_open(client, listed, confirmed, settings, django_capture_on_commit_callbacks):
    """At T0 - 400 days and T0 - 300 days: requests closed in different ways, and one still open."""
    settings.DELIST_RETENTION_DAYS = 365
    made = {}
    with time_machine.travel(T0 - timedelta(days=400), tick=False):
        # Rejected, with a reviewer's reason that names the sender and where they wrote from.
        confirmed(ip=IN_RANGE_IP, email="Old.Sender+bl@Mail.Example.com")
        made["rejected"] = DelistRequest.objects.get(email="Old.Sender+bl@Mail.Example.com")
        DelistRequest.objects.filter(pk=made["rejected"].pk).update(client_ip="81.2.69.142")
        reject(made["rejected"], "old.sender@mail.example.com (from 81.2.69.142) owns 37.120.8.9; no.")
        # Expired: the link was never used; its mail's last error quotes the recipient.
        made["expired"] = submit(
            client,
            "gone@example.net",
            LISTED_IP,
            django_capture_on_commit_callbacks,
            REMOTE_ADDR="81.2.69.143",
        )
        Mail.objects.filter(request=made["expired"]).update(
            last_error="SMTPRecipientsRefused: {'gone@example.net': (550, b'no such user')}"
        )
    with time_machine.travel(T0 - timedelta(days=399), tick=False):
        services.requests_expire_stale(now=T0 - timedelta(days=398))
    with time_machine.travel(T0 - timedelta(days=300), tick=False):
        # Closed 300 days before T0: inside the retention, kept whole.
        made["recent"] = submit(
            client,
            "recent@example.org",
            LISTED_IP,
            django_capture_on_commit_callbacks,
            REMOTE_ADDR="81.2.69.144",
        )
        confirmed(ip=IN_RANGE_IP, email="review@example.org")
        # Still open: never erased, however old. (Found by its sender: the clock stands still.)
        made["in_review"] = DelistRequest.objects.get(email="review@example.org")
    with time_machine.travel(T0 - timedelta(days=299), tick=False):
        services.requests_expire_stale(now=T0 - timedelta(days=298))
    for key, request in made.items():
        made[key] = DelistRequest.objects.get(pk=request.pk)
    assert made["rejected"].state == State.REJECTED and made["expired"].state == State.EXPIRED
    assert made["recent"].state == State.EXPIRED and made["in_review"].state == State.NEEDS_REVIEW
    return made


def test_the_sweep_erases_exactly_the_requests_closed_longer_ago_than_the_retention(closed_and_open):
    with time_machine.travel(T0, tick=False):
        services.sweep()
    after = {key: DelistRequest.objects.get(pk=request.pk) for key, request in closed_and_open.items()}

    for key in ("rejected", "expired"):
        erased = after[key]
        assert (erased.email, erased.mailbox, erased.email_domain, erased.client_ip) == ("", "", "", None)
        # The facts stay: the IP, the state, the times, the trail.
        assert erased.ip == closed_and_open[key].ip and erased.state == closed_and_open[key].state
        assert erased.closed_at == closed_and_open[key].closed_at
        assert Event.objects.filter(request=erased).count() >= 2
    for key in ("recent", "in_review"):
        kept = after[key]
        assert kept.email == closed_and_open[key].email and kept.mailbox == closed_and_open[key].mailbox
        assert kept.client_ip == closed_and_open[key].client_ip


def test_reasons_and_mail_errors_lose_the_sender_but_keep_the_delisted_ip(closed_and_open):
    rejected, expired = closed_and_open["rejected"], closed_and_open["expired"]
    assert retention.requests_erase_personal_data(now=T0) == 2

    reason = "[erased] (from [erased]) owns 37.120.8.9; no."
    assert DelistRequest.objects.get(pk=rejected.pk).decision_reason == reason
    assert Event.objects.get(request=rejected, action=Event.Action.REJECTED).reason == reason
    assert list(Mail.objects.filter(request=expired).values_list("last_error", flat=True)) == [""]
    # The confirmation's copy of the mailbox and domain (for the mail limits) goes too.
    assert set(
        Mail.objects.filter(request__in=[rejected, expired]).values_list("mailbox", "email_domain")
    ) == {("", "")}
    assert Mail.objects.filter(request=closed_and_open["recent"], mailbox="recent@example.org").exists()
    # Nothing names them any more, anywhere their request left a trace.
    for text in [
        *Event.objects.filter(request__in=[rejected, expired]).values_list("reason", flat=True),
        *Mail.objects.filter(request__in=[rejected, expired]).values_list("last_error", flat=True),
    ]:
        for personal in ("sender", "gone@", "81.2.69.14"):
            assert personal not in text.lower()
    # Kept requests' data is untouched.
    assert Mail.objects.filter(request=closed_and_open["recent"]).exists()
    assert DelistRequest.objects.get(pk=closed_and_open["recent"].pk).client_ip == "81.2.69.144"


def test_it_works_in_batches_and_a_second_pass_finds_nothing(closed_and_open, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 1)
    assert retention.requests_erase_personal_data(now=T0) == 2
    assert retention.requests_erase_personal_data(now=T0) == 0


def test_the_retention_boundary_is_exact(closed_and_open, settings):
    expired = closed_and_open["expired"]
    settings.DELIST_RETENTION_DAYS = 1
    # Closed at closed_at: erased once a full day has passed, not a second before (the rejected
    # request, closed two days earlier, goes in the first pass).
    assert retention.requests_erase_personal_data(now=expired.closed_at + timedelta(days=1, seconds=-1)) == 1
    assert DelistRequest.objects.get(pk=expired.pk).email == "gone@example.net"
    assert retention.requests_erase_personal_data(now=expired.closed_at + timedelta(days=1)) == 1
    assert DelistRequest.objects.get(pk=expired.pk).email == ""


def test_the_mail_limits_still_count_what_is_inside_their_window(
    client, listed, settings, django_capture_on_commit_callbacks
):
    # The shortest retention there is, and a mailbox limit of one mail an hour: retention cannot
    # reach a mail the limit counts, because a request closes after its mail was made.
    settings.DELIST_RETENTION_DAYS = 1
    settings.DELIST_MAILBOX_RATE = "1/h"
    with time_machine.travel(T0, tick=False):
        submit(client, "limited@example.com", LISTED_IP, django_capture_on_commit_callbacks)
    with time_machine.travel(T0 + timedelta(minutes=30), tick=False):
        services.requests_expire_stale(now=T0 + timedelta(days=2))  # closed at once, whatever
        assert retention.requests_erase_personal_data(now=T0 + timedelta(minutes=30)) == 0
        with pytest.raises(MailLimitReached):
            mail_limits_check(
                mailbox="limited@example.com", domain="example.com", now=T0 + timedelta(minutes=30)
            )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"DELIST_RETENTION_DAYS": "0"}, "DELIST_RETENTION_DAYS must be 1 to 36500 days, not 0"),
        ({"DELIST_RETENTION_DAYS": "a year"}, "DELIST_RETENTION_DAYS must be a whole number"),
        (
            {"DELIST_RETENTION_DAYS": "1", "DELIST_MAILBOX_RATE": "5/2d"},
            "DELIST_MAILBOX_RATE's window is longer than DELIST_RETENTION_DAYS",
        ),
    ],
)
def test_a_bad_retention_stops_start_up_with_a_clear_message(environment, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELIST_")}
    env.update({"DJANGO_SETTINGS_MODULE": "delist_portal.settings", "DEBUG": "true", **environment})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
