"""A submission on PostgreSQL is one message of two statements (requests_app.submission_sql);
elsewhere it is the ORM's steps. Both write the same rows and refuse alike, and a burst of
submissions wakes the worker's mail sender once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse

from blocklist.ip import parse_ip
from blocklist.models import Event
from delist_portal.celery import app as celery_app
from requests_app import outbox, services, tasks
from requests_app.limits import MailLimitReached
from requests_app.models import DelistRequest, Mail, MailWindow
from tests.conftest import LISTED_IP, SENDER, UNLISTED_IP

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
postgres_only = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="the one-message submission is PostgreSQL's",
)


@pytest.fixture(params=["one message", "ORM"])
def path(request, monkeypatch):
    """Which way request_submit writes on PostgreSQL: its own, or the portable one SQLite takes."""
    if request.param == "ORM":
        monkeypatch.setattr(services, "_submit_in_one_trip", services._submit)
    return request.param


class Rollback(Exception):
    pass


def rows_written(**submission) -> dict:
    """Submit twice for one mailbox and IP (the second supersedes the first); every row it
    wrote, with ids as the requests' order and random values as whether they are set. Rolled back."""
    try:
        with transaction.atomic():
            for email in (SENDER, SENDER.upper()):
                services.request_submit(email=email, ip=parse_ip(LISTED_IP), **submission)
            raise Rollback(snapshot())
    except Rollback as done:
        return done.args[0]


def snapshot() -> dict:
    order = {pk: i for i, pk in enumerate(DelistRequest.objects.order_by("pk").values_list("pk", flat=True))}
    random = {"status_key", "token_hash", "token_nonce"}

    def plain(row: dict) -> dict:
        row = {k: bool(v) if k in random else v for k, v in row.items() if k != "id"}
        for key in ("request_id", "superseded_by_id", "merged_into_id"):
            if row.get(key) is not None:
                row[key] = order[row[key]]
        if "reason" in row:
            row["reason"] = re.sub(r"#(\d+)", lambda m: f"#{order[int(m[1])]}", row["reason"])
        return row

    requests = [plain(row) for row in DelistRequest.objects.order_by("pk").values()]
    events = sorted(
        (plain(row) for row in Event.objects.filter(request__isnull=False).values()),
        key=lambda row: (row["request_id"], row["action"]),
    )
    mails = sorted((plain(row) for row in Mail.objects.values()), key=lambda row: row["request_id"])
    return {"requests": requests, "events": events, "mails": mails}


@postgres_only
def test_both_ways_write_the_same_rows(listed):
    with time_machine.travel(NOW, tick=False):
        one_message = rows_written(language="sv", client_ip="192.0.2.7")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(services, "_submit_in_one_trip", services._submit)
            orm = rows_written(language="sv", client_ip="192.0.2.7")
    assert one_message == orm
    first, second = one_message["requests"]
    assert (first["state"], first["superseded_by_id"], second["state"]) == ("superseded", 1, "pending")
    assert [(e["request_id"], e["action"], e["reason"]) for e in one_message["events"]] == [
        (0, "submitted", ""),
        (0, "superseded", "by request #1"),
        (1, "submitted", ""),
    ]
    assert [m["cancelled_at"] for m in one_message["mails"]] == [NOW, None]


@postgres_only
@pytest.mark.parametrize("scope", ["mailbox", "domain"])
def test_both_ways_refuse_a_full_limit_alike_and_write_nothing(listed, settings, path, scope):
    settings.DELIST_MAILBOX_RATE = "1/h" if scope == "mailbox" else "5/h"
    settings.DELIST_DOMAIN_RATE = "1/h" if scope == "domain" else "5/h"
    with time_machine.travel(NOW, tick=False):
        services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    other = SENDER if scope == "mailbox" else "abuse@mail.example.com"
    with (
        time_machine.travel(NOW + timedelta(minutes=10), tick=False),
        pytest.raises(MailLimitReached) as refused,
    ):
        services.request_submit(email=other, ip=parse_ip(LISTED_IP))
    assert (refused.value.scope, refused.value.retry_after) == (scope, 50 * 60)
    assert DelistRequest.objects.count() == Mail.objects.count() == 1
    assert Event.objects.filter(request__isnull=False).count() == 1


@postgres_only
def test_a_submission_costs_two_round_trips(one_instant, listed, django_assert_num_queries):
    services.request_submit(email="first@mail.example.com", ip=parse_ip(LISTED_IP))  # prepares, once
    # The portal ceiling's own transaction, which asks whether the IP is listed, and the
    # message that writes it all.
    with django_assert_num_queries(2):
        services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    with django_assert_num_queries(2):  # superseding the first costs nothing more
        services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    with django_assert_num_queries(1):  # not listed: the first answers it, and counts nothing
        assert services.request_submit(email=SENDER, ip=parse_ip(UNLISTED_IP)) is None


def test_the_ceiling_counts_listed_ips_only_and_an_unlisted_one_is_told_so_when_it_is_full(
    one_instant, listed, settings
):
    settings.DELIST_MAIL_RATE = "2/h"

    def counted() -> int:
        return sum(MailWindow.objects.values_list("sent", flat=True))

    assert services.request_submit(email=SENDER, ip=parse_ip(UNLISTED_IP)) is None
    assert counted() == 0
    for email in (SENDER, "abuse@mail.example.com"):
        assert services.request_submit(email=email, ip=parse_ip(LISTED_IP)) is not None
    assert counted() == 2
    with pytest.raises(MailLimitReached) as refused:
        services.request_submit(email="noc@mail.example.com", ip=parse_ip(LISTED_IP))
    assert refused.value.scope == "portal"
    # Full, but an IP that is not listed is told that, not to wait for the next window.
    assert services.request_submit(email="noc@mail.example.com", ip=parse_ip(UNLISTED_IP)) is None
    assert counted() == 2
    assert DelistRequest.objects.count() == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_submission_prepares_its_statement_again_when_the_session_lost_it(one_instant, listed):
    services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a connection pooler resets a session
    second = services.request_submit(email="abuse@mail.example.com", ip=parse_ip(LISTED_IP))
    assert DelistRequest.objects.filter(pk=second.pk, state="pending").exists()
    assert Mail.objects.filter(request=second).count() == 1


@pytest.fixture
def real_broker():
    """Celery publishing to the suite's Redis, eager mode off; its queue emptied before and after."""
    if not settings.CACHE_SHARED:
        pytest.skip("wake-ups stand for each other only where web and worker share a Redis cache")
    conf = celery_app.conf
    saved = conf.task_always_eager
    conf.task_always_eager = False
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue.delete("celery")
    yield queue
    queue.delete("celery")
    conf.task_always_eager = saved


def queued(queue) -> list[str]:
    return [json.loads(message)["headers"]["task"] for message in queue.lrange("celery", 0, -1)]


def test_a_burst_of_submissions_wakes_the_mail_sender_once_and_it_sends_them_all(
    one_instant, client, listed, settings, mailoutbox, real_broker, django_capture_on_commit_callbacks
):
    settings.DELIST_SUBMIT_RATE = "100/h"
    for n in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("requests:submit"), {"email": f"s{n}@mx{n}.example.net", "ip": LISTED_IP}
            )
        assert response.status_code == 302
    assert queued(real_broker) == [outbox.SEND_DUE]

    real_broker.delete("celery")  # the worker takes it
    assert tasks.mails_send_due() == 5
    assert sorted(m.to[0] for m in mailoutbox) == [f"s{n}@mx{n}.example.net" for n in range(5)]

    # Once the sender has started, a new mail needs a wake-up of its own.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": "late@mx9.example.net", "ip": LISTED_IP})
    assert queued(real_broker) == [outbox.SEND_DUE]


def test_without_a_shared_cache_every_mail_wakes_the_sender(
    one_instant, client, listed, settings, mailoutbox, django_capture_on_commit_callbacks
):
    # The embedded default: the worker could not take a mark out of this process's cache.
    settings.CACHE_SHARED, settings.DELIST_SUBMIT_RATE = False, "100/h"
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": f"s{n}@mx{n}.example.net", "ip": LISTED_IP})
        assert len(mailoutbox) == n + 1  # sent by the eager wake-up of its own submission


def test_a_wake_up_that_could_not_be_queued_stands_for_nothing(
    one_instant, client, listed, settings, broker_down, caplog, django_capture_on_commit_callbacks
):
    if not settings.CACHE_SHARED:
        pytest.skip("wake-ups stand for each other only where web and worker share a Redis cache")
    settings.DELIST_SUBMIT_RATE = "100/h"
    for n in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": f"s{n}@mx{n}.example.net", "ip": LISTED_IP})
    # Each tried the broker itself: the first one's failure left no mark to stand for the second.
    refused = [r for r in caplog.records if r.getMessage().startswith("could not queue mail")]
    assert len(refused) == 2
