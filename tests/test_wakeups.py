"""A burst of submissions wakes the worker's mail sender once, through a mark in the database
(requests_app.wakeups), on the embedded default as with Redis; the mark stands for nothing once
its message was lost or its time is up; and the sender waits for the submissions in flight that
saw the mark before it looks for mail."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import time_machine
from django.conf import settings
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from blocklist.ip import parse_ip
from delist_portal.celery import app as celery_app
from requests_app import outbox, services, tasks, wakeups
from requests_app.models import DelistRequest, Mail, WakeUp
from tests.conftest import LISTED_IP, SENDER
from tests.test_submission_paths import NOW, postgres_only


class Queue:
    """The broker's queue as the worker would find it: Redis's list, or the embedded default's
    folder of messages."""

    def __init__(self):
        if settings.CELERY_BROKER_URL.startswith("redis://"):
            self.redis = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        else:
            self.redis = None
            self.folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"])
            self.folder.mkdir(parents=True, exist_ok=True)

    def tasks(self) -> list[str]:
        if self.redis is not None:
            messages = self.redis.lrange("celery", 0, -1)
        else:
            messages = [f.read_bytes() for f in sorted(self.folder.glob("*.msg"))]
        return [json.loads(message)["headers"]["task"] for message in messages]

    def clear(self) -> None:
        """As the worker takes the messages."""
        if self.redis is not None:
            self.redis.delete("celery")
        else:
            for message in self.folder.glob("*.msg"):
                message.unlink()


@pytest.fixture
def queue():
    """Celery publishing to the configured broker, eager mode off; its queue emptied around."""
    conf = celery_app.conf
    saved = conf.task_always_eager
    conf.task_always_eager = False
    found = Queue()
    found.clear()
    yield found
    found.clear()
    conf.task_always_eager = saved


def submit(client, email: str):
    return client.post(reverse("requests:submit"), {"email": email, "ip": LISTED_IP})


@pytest.fixture
def burst(settings):
    settings.DELIST_SUBMIT_RATE = "100/h"


def test_a_burst_of_submissions_wakes_the_mail_sender_once_and_it_sends_them_all(
    one_instant, client, listed, burst, mailoutbox, queue, path, django_capture_on_commit_callbacks
):
    for n in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            assert submit(client, f"s{n}@mx{n}.example.net").status_code == 302
    assert queue.tasks() == [outbox.SEND_DUE]
    assert WakeUp.objects.filter(task=outbox.SEND_DUE).exists()

    queue.clear()  # the worker takes it
    assert tasks.mails_send_due() == 5
    assert sorted(m.to[0] for m in mailoutbox) == [f"s{n}@mx{n}.example.net" for n in range(5)]
    assert not WakeUp.objects.exists()  # taken away before it looked

    # Once the sender has started, a new mail needs a wake-up of its own.
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, "late@mx9.example.net")
    assert queue.tasks() == [outbox.SEND_DUE]


def test_a_refused_submission_sets_no_mark(one_instant, client, listed, settings, queue, path):
    settings.DELIST_SUBMIT_RATE, settings.DELIST_MAILBOX_RATE = "100/h", "1/h"
    submit(client, SENDER)
    WakeUp.objects.all().delete()
    queue.clear()
    assert submit(client, SENDER).status_code == 429  # the mailbox's limit: nothing written
    assert not WakeUp.objects.exists() and queue.tasks() == []


def test_a_mark_whose_message_was_lost_stands_for_a_minute_at_most(
    client, listed, burst, queue, path, django_capture_on_commit_callbacks
):
    def submitted_at(offset: timedelta, email: str) -> list[str]:
        with (
            time_machine.travel(NOW + offset, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            submit(client, email)
        return queue.tasks()

    assert submitted_at(timedelta(0), "a@mx1.example.net") == [outbox.SEND_DUE]
    queue.clear()  # lost: no worker ever starts
    assert submitted_at(wakeups.STANDS_FOR - timedelta(seconds=1), "b@mx2.example.net") == []
    assert submitted_at(wakeups.STANDS_FOR, "c@mx3.example.net") == [outbox.SEND_DUE]
    assert WakeUp.objects.get().queued_at == NOW + wakeups.STANDS_FOR


def test_a_wake_up_that_could_not_be_queued_stands_for_nothing(
    one_instant, client, listed, burst, broker_down, caplog, path, django_capture_on_commit_callbacks
):
    for n in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            submit(client, f"s{n}@mx{n}.example.net")
    # Each tried the broker itself: the first one's failure left no mark to stand for the second.
    refused = [r for r in caplog.records if r.getMessage().startswith("could not queue mail")]
    assert len(refused) == 2
    assert not WakeUp.objects.exists()


def test_the_sender_takes_the_mark_away_when_it_starts_and_twice_does_no_harm(one_instant, db, queue):
    assert wakeups.wake(outbox.SEND_DUE, what="a mail")
    assert wakeups.wake(outbox.SEND_DUE, what="another")
    assert queue.tasks() == [outbox.SEND_DUE]
    wakeups.woken(outbox.SEND_DUE)
    wakeups.woken(outbox.SEND_DUE)  # nothing to take away: no harm
    assert wakeups.wake(outbox.SEND_DUE, what="a third")
    assert queue.tasks() == [outbox.SEND_DUE, outbox.SEND_DUE]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_sender_waits_for_a_submission_in_flight_that_saw_the_mark(listed):
    """The race the lock closes: a submission finds the mark set (so it queues nothing), and
    before it commits the woken sender takes the mark away and looks. Without waiting, the
    sender would miss that mail, and it would wait for the sweep."""
    older = services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    WakeUp.objects.update_or_create(task=outbox.SEND_DUE, defaults={"queued_at": timezone.now()})
    events: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def hold_the_older_request() -> None:
        # The new submission supersedes this row: it waits here, its locks taken.
        try:
            with transaction.atomic():
                DelistRequest.objects.select_for_update().get(pk=older.pk)
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    def submit_again() -> None:
        try:
            services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
            events.append("submission committed")
        finally:
            connections.close_all()

    def sender_starts() -> None:
        try:
            wakeups.woken(outbox.SEND_DUE)
            owed = Mail.objects.filter(sent_at__isnull=True, cancelled_at__isnull=True)
            events.append(f"sender looked and found {owed.exclude(request=older).count()} new")
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_older_request)
    holder.start()
    assert holding.wait(30)
    submission = threading.Thread(target=submit_again)
    submission.start()
    wait_until_blocked(older.pk)
    sender = threading.Thread(target=sender_starts)
    sender.start()
    sender.join(1)
    assert sender.is_alive()  # it waits for the submission that holds the lock
    release.set()
    for thread in (holder, submission, sender):
        thread.join(30)
    assert events == ["submission committed", "sender looked and found 1 new"]
    assert not WakeUp.objects.exists()


def wait_until_blocked(pk: int) -> None:
    """Until a backend waits for a lock (the submission, at the older request's row)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError(f"no submission waited for request {pk}")
