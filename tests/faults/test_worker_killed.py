"""A worker SIGKILLed in the middle of a sweep, then two workers sweeping at once: every due
delisting is applied exactly once, and every mail goes out; the one SMTP had taken when the
worker died goes out twice, by design, and a re-sent confirmation carries the same link."""

import time

import pytest

from requests_app.outbox import MAIL_LEASE
from requests_app.services import BATCH
from tests.faults.conftest import (
    Sender,
    Tally,
    assert_exactly_once,
    links_to,
    received,
    settle,
    text_part,
    wait_for,
)

pytestmark = pytest.mark.faults

# Several of the sweep's claimed batches, so a sweep that commits a batch at a time is seen
# part-way through.
DUE = 4 * BATCH
IPS = [f"5.61.{14 + i // 250}.{1 + i % 250}" for i in range(DUE)]

# Approved requests whose delay has passed, one per entry, as request_confirm leaves them.
MAKE_DUE = """
from datetime import timedelta
from django.utils import timezone
from blocklist.models import Entry
from requests_app.models import DelistRequest, State
now = timezone.now()
entries = list(Entry.objects.order_by("pk"))
made = DelistRequest.objects.bulk_create(
    DelistRequest(
        email=f"postmaster@m{e.pk}.example.com",
        mailbox=f"postmaster@m{e.pk}.example.com",
        email_domain=f"m{e.pk}.example.com",
        ip=str(e.ip_network.network_address),
        state=State.APPROVED,
        confirmed_at=now,
        decided_at=now,
        decided_by="self-service",
        effective_at=now - timedelta(seconds=1),
    )
    for e in entries
)
Link = DelistRequest.entries.through
Link.objects.bulk_create(Link(delistrequest_id=r.pk, entry_id=e.pk) for r, e in zip(made, entries))
print(len(made))
"""

# Mails claimed (attempts counted) but not recorded as sent.
IN_FLIGHT = (
    "SELECT r.email FROM requests_app_mail m JOIN requests_app_delistrequest r ON r.id = m.request_id"
    " WHERE m.sent_at IS NULL AND m.attempts > 0"
)
ATTEMPTS = (
    "SELECT m.attempts, count(*) FROM requests_app_mail m JOIN requests_app_delistrequest r"
    " ON r.id = m.request_id WHERE r.email = ANY(%s) GROUP BY m.attempts"
)
COMPLETED = "SELECT count(*) FROM requests_app_delistrequest WHERE state = 'completed'"


def test_a_worker_killed_mid_sweep_and_two_workers_after_it_apply_each_due_request_once(
    scratch_database, own_redis, smtp_server, portals
):
    # At full speed a mail is in flight too briefly for a kill to land there (0 of 4 runs): until
    # the kill, a slow 250 reply widens the window between SMTP's acceptance and the outbox's record.
    smtp_server.inbox.reply_delay = 0.25
    portal = portals(database_url=scratch_database, redis_url=own_redis.url, smtp=smtp_server)
    portal.list_ips(IPS)
    assert portal.manage("shell", "--no-imports", "-c", MAKE_DUE).strip() == str(DUE)

    def in_flight() -> set:
        return {(email, "completed") for (email,) in portal.sql(IN_FLIGHT)}

    def accepted_unrecorded() -> set:
        return in_flight() & set(received(smtp_server))

    portal.start_beat()
    portal.start_worker("worker-killed", "killed")
    # Part-way through the sweep, at a mail SMTP took but the outbox has not recorded yet; past
    # half of the sweep, kill anyway.
    wait_for(
        lambda: (done := portal.count(COMPLETED)) and (accepted_unrecorded() or done >= DUE // 2),
        timeout=60,
        interval=0.01,
        what="the first worker to be applying and mailing",
    )
    portal.kill("worker-killed")
    at_kill = portal.count(COMPLETED)  # its open transaction, if any, rolled back with its connection
    time.sleep(0.5)  # the SMTP server finishes what the dead worker had handed it
    smtp_server.inbox.reply_delay = 0.0
    # Nobody retries these until their lease runs out; the accepted ones will arrive twice.
    orphaned, accepted = in_flight(), accepted_unrecorded()
    print(f"killed after {at_kill} of {DUE} completed and {len(smtp_server.messages)} mail(s) received;")
    print(f"{len(orphaned)} mail(s) in flight, {len(accepted)} of them already accepted by SMTP")
    assert 0 < at_kill < DUE, "the worker was not killed mid-sweep"

    restarted = time.monotonic()
    portal.start_worker("worker-a", "a")
    portal.start_worker("worker-b", "b")
    wait_for(lambda: portal.count(COMPLETED) == DUE, timeout=120, what="every due request to be completed")
    print(f"two workers completed the rest in {time.monotonic() - restarted:.1f} s")
    # A mail claimed by the dead worker waits out its lease before anyone retries it.
    wait_for(
        lambda: not portal.count("SELECT count(*) FROM requests_app_mail WHERE sent_at IS NULL"),
        timeout=MAIL_LEASE.total_seconds() + 60,
        what="every completion mail to be sent",
    )
    print(f"every mail sent {time.monotonic() - restarted:.1f} s after the restart")
    print("attempts of the orphaned mails:", portal.sql(ATTEMPTS, (sorted(e for e, _k in orphaned),)))
    settle()

    requests = portal.sql("SELECT id FROM requests_app_delistrequest")
    entries = portal.sql("SELECT id FROM blocklist_entry")
    events = "SELECT {} FROM blocklist_event WHERE action = %s"
    assert_exactly_once(
        "requests completed", requests, portal.sql(events.format("request_id"), ("completed",))
    )
    assert_exactly_once("entries delisted", entries, portal.sql(events.format("entry_id"), ("delisted",)))
    assert_exactly_once("mails owed", requests, portal.sql("SELECT request_id FROM requests_app_mail"))
    assert not portal.count("SELECT count(*) FROM blocklist_entry WHERE delisted_at IS NULL")

    # SMTP accepted a mail, then the worker died before recording it: re-sent once the lease ran
    # out. The outbox allows that double by design (at least once); exactly those arrive twice.
    owed = [(email, "completed") for (email,) in portal.sql("SELECT email FROM requests_app_delistrequest")]
    mail = Tally("completion mail", owed, received(smtp_server))
    print(mail)
    assert not mail.lost and not mail.unexpected, str(mail)
    assert set(mail.doubled) == accepted and set(mail.doubled.values()) <= {2}, str(mail)
    for email, _kind in mail.doubled:
        first, again = (text_part(m) for m in smtp_server.messages if m["To"] == email)
        assert first == again  # the same mail twice, not two different ones


def test_a_confirmation_resent_after_its_worker_died_carries_the_same_link(
    scratch_database, own_redis, smtp_server, portals
):
    # SMTP takes the message and waits before its 250: the worker dies in between.
    smtp_server.inbox.reply_delay = 3.0  # under EMAIL_TIMEOUT (5 s)
    portal = portals(database_url=scratch_database, redis_url=own_redis.url, smtp=smtp_server)
    portal.list_ips(["5.61.14.7"])
    portal.start_all()
    portal.wait_healthy()
    sender = Sender(portal, "postmaster@a.example.com", "5.61.14.7")
    sender.submit()
    wait_for(lambda: smtp_server.messages, timeout=30, what="SMTP to take the confirmation")
    portal.kill("worker")
    time.sleep(0.5)
    smtp_server.inbox.reply_delay = 0.0
    assert portal.sql("SELECT attempts, sent_at FROM requests_app_mail") == [(1, None)]

    # The lease (MAIL_LEASE) runs out now rather than in 90 s; test_a_worker_killed_mid_sweep...
    # waits one out for real.
    portal.sql("UPDATE requests_app_mail SET due_at = now()")
    portal.start_worker("worker-again", "again")
    wait_for(lambda: len(smtp_server.messages) >= 2, timeout=60, what="the confirmation again")
    settle()
    mail = Tally("confirmation mail", [(sender.email, "confirmation")], received(smtp_server))
    print(mail, "(the double the outbox allows by design)")
    assert not mail.lost and mail.doubled == {(sender.email, "confirmation"): 2}, str(mail)
    first, again = links_to(smtp_server, sender.email)
    assert first == again  # the same link: whichever copy the sender opens confirms

    sender.confirm(again)
    wait_for(lambda: not portal.listed(sender.ip), timeout=30, what=f"{sender.ip} to be delisted")
    assert "already used" in sender.get(first).text
    wait_for(lambda: len(smtp_server.messages) >= 3, timeout=30, what="the completion mail")
    settle()
    assert received(smtp_server).count((sender.email, "completed")) == 1
