"""A submission on PostgreSQL is one message of two statements (requests_app.submission_sql);
elsewhere it is the ORM's steps. Both write the same rows and refuse alike (how they wake the
mail sender: tests/test_wakeups.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import transaction

from blocklist.ip import parse_ip
from blocklist.models import Event
from requests_app import services
from requests_app.limits import MailLimitReached
from requests_app.models import DelistRequest, Mail, MailWindow
from tests.conftest import LISTED_IP, SENDER, UNLISTED_IP
from tests.test_prepared import session_reset

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
postgres_only = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="the one-message submission is PostgreSQL's",
)


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
    session_reset()
    second = services.request_submit(email="abuse@mail.example.com", ip=parse_ip(LISTED_IP))
    assert DelistRequest.objects.filter(pk=second.pk, state="pending").exists()
    assert Mail.objects.filter(request=second).count() == 1
