"""Redis (broker and cache) away, or flushed: senders are still served, and nothing owed is lost,
because the database is the only record of what is due."""

import time
from datetime import timedelta

import pytest

from delist_portal.views import HEALTH_TTL
from tests.faults.conftest import ANSWER_WITHIN, Sender, assert_exactly_once, received, settle, wait_for

pytestmark = pytest.mark.faults

IPS = ["5.61.14.7", "5.61.14.8", "5.61.14.9"]
OUTAGE = 8  # seconds


def test_with_redis_away_senders_are_served_and_owed_mail_goes_out_when_it_returns(
    scratch_database, own_redis, smtp_server, portals
):
    portal = portals(database_url=scratch_database, redis_url=own_redis.url, smtp=smtp_server)
    portal.list_ips(IPS)
    portal.start_all()
    portal.wait_healthy()
    first = Sender(portal, "postmaster@a.example.com", IPS[0])
    first.submit()
    link = first.link(smtp_server)

    own_redis.stop()
    stopped = time.monotonic()
    later = [Sender(portal, f"postmaster@{x}.example.com", ip) for x, ip in zip("bc", IPS[1:], strict=True)]
    answers, timings = {}, {}
    for what, call in (
        ("submit", lambda: [sender.submit() for sender in later]),
        ("confirm", lambda: first.confirm(link)),
        ("status", lambda: [first.get(s.status_url) for s in [first, *later]]),
        ("lookup", lambda: first.get(f"{portal.base_url}/?ip={IPS[0]}")),
        ("api", lambda: portal.listed(IPS[0])),
    ):
        started = time.monotonic()
        answers[what] = call()  # each asserts its own answer: no 5xx
        timings[what] = round(time.monotonic() - started, 2)
    print("answers with redis away (s):", timings)
    assert max(timings.values()) < ANSWER_WITHIN
    assert answers["api"] is True  # confirmed, not yet applied: the sweep needs the broker
    # Each web process reuses its health answer for HEALTH_TTL seconds: the outage shows within that.
    status, checks = wait_for(
        lambda: (health := portal.healthz())[0] != 200 and health,
        timeout=HEALTH_TTL + 5,
        what="/healthz to report the outage",
    )
    print(f"/healthz reported the outage {time.monotonic() - stopped:.1f} s after it began")
    assert status == 503 and checks["database"] == "ok", checks
    assert checks["cache"].startswith("fail") and checks["broker"].startswith("fail"), checks
    assert "Scheduled for removal" in first.get(first.status_url).text
    assert len(smtp_server.messages) == 1  # only the mail sent before Redis went away
    # Away for several sweeps, so beat and the worker lose their connections too, not only the web.
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))

    own_redis.start()  # same port, empty
    returned = time.monotonic()
    owed = [(s.email, "confirmation") for s in [first, *later]] + [(first.email, "completed")]
    wait_for(lambda: len(smtp_server.messages) >= len(owed), timeout=90, what="the owed mail")
    print(f"owed mail out {time.monotonic() - returned:.1f} s after Redis returned")
    wait_for(lambda: not portal.listed(IPS[0]), timeout=30, what="the confirmed request to be applied")
    settle()
    assert_exactly_once("mail", owed, received(smtp_server))
    assert portal.sql("SELECT state FROM requests_app_delistrequest ORDER BY id") == [
        ("completed",),
        ("pending",),
        ("pending",),
    ]
    portal.wait_healthy(timeout=30)


def test_approved_requests_are_applied_on_time_after_redis_is_flushed(
    scratch_database, own_redis, smtp_server, portals
):
    delay = 8
    portal = portals(
        database_url=scratch_database,
        redis_url=own_redis.url,
        smtp=smtp_server,
        DELIST_PROPAGATION_DELAY=str(delay),
    )
    portal.list_ips(IPS)
    portal.start_all()
    portal.wait_healthy()
    senders = [Sender(portal, f"postmaster@{x}.example.com", ip) for x, ip in zip("abc", IPS, strict=True)]
    for sender in senders:
        sender.submit()
    for sender in senders:
        sender.confirm(sender.link(smtp_server))

    # Approved and not yet due: the broker holds nothing they depend on.
    due = portal.sql("SELECT id, effective_at, effective_at > now() FROM requests_app_delistrequest")
    assert [row[2] for row in due] == [True] * len(senders), due
    own_redis.client().flushall()

    wait_for(
        lambda: (
            portal.count("SELECT count(*) FROM requests_app_delistrequest WHERE state = 'completed'")
            == len(senders)
        ),
        timeout=delay + 30,
        what="every approved request to be applied",
    )
    lateness = portal.sql("SELECT completed_at - effective_at FROM requests_app_delistrequest")
    print("applied after effective_at:", sorted(round(late.total_seconds(), 2) for (late,) in lateness))
    # On time: within a few sweeps (DELIST_SWEEP_INTERVAL is 1 s) of the moment it fell due.
    assert all(timedelta(0) <= late < timedelta(seconds=5) for (late,) in lateness), lateness
    entries = portal.sql("SELECT id FROM blocklist_entry")
    delisted = portal.sql("SELECT entry_id FROM blocklist_event WHERE action = 'delisted'")
    assert_exactly_once("entries delisted", entries, delisted)
    owed = [(s.email, kind) for s in senders for kind in ("confirmation", "completed")]
    wait_for(lambda: len(smtp_server.messages) >= len(owed), timeout=30, what="the completion mails")
    settle()
    assert_exactly_once("mail", owed, received(smtp_server))
