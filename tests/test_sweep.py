"""The sweep: applies what is due exactly once, expires what is stale, sends what is owed."""

import ipaddress
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from blocklist.ip import parse_ip
from blocklist.models import Entry, Event
from blocklist.services import entries_covering, entries_delist, new_entry
from requests_app import services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import LISTED_IP, SENDER, confirmation_link, link_path, press_delist_button


@pytest.fixture
def approved(client, listed, mailoutbox, settings, django_capture_on_commit_callbacks):
    """A self-service request for LISTED_IP, confirmed through the real pages."""
    settings.DELIST_PROPAGATION_DELAY = 60
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
    request = DelistRequest.objects.get()
    assert request.state == State.APPROVED
    return request


def listed_now(ip: str) -> bool:
    return entries_covering(parse_ip(ip)).exists()


def test_nothing_is_delisted_before_the_delay_has_passed(approved):
    services.sweep(now=approved.effective_at - timedelta(seconds=1))
    approved.refresh_from_db()
    assert approved.state == State.APPROVED
    assert listed_now(LISTED_IP)


def test_a_due_request_is_applied_completed_and_reported(
    approved, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = services.sweep(now=approved.effective_at)
    approved.refresh_from_db()
    assert result.delistings_applied == 1
    assert approved.state == State.COMPLETED
    assert approved.completed_at == approved.effective_at
    assert not listed_now(LISTED_IP)
    entry = approved.entries.get()
    assert entry.delisted_at == approved.effective_at
    assert entry.delisted_by == f"delist request #{approved.pk}"
    assert "has been removed" in mailoutbox[-1].subject
    # Applying again changes nothing.
    assert services.sweep(now=approved.effective_at + timedelta(hours=1)).delistings_applied == 0


def test_an_entry_listed_after_confirmation_stays_listed(
    approved, listing, django_capture_on_commit_callbacks
):
    # Listed again by another source while the delisting waits: a new offence.
    later = listing("5.61.14.0/28", reason="new spam run")
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep(now=approved.effective_at)
    later.refresh_from_db()
    assert later.delisted_at is None
    assert [e.network for e in entries_covering(parse_ip(LISTED_IP))] == ["5.61.14.0/28"]


def test_the_status_page_shows_the_whole_timeline(client, approved, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep(now=approved.effective_at)
    html = client.get(reverse("requests:status", args=[approved.status_key])).content.decode()
    for step in ("Request submitted", "Confirmed", "Approved", "Removed from the blocklist"):
        assert step in html
    assert "Delisted at" in html


def test_unconfirmed_requests_expire_and_their_links_die(
    client, listed, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_TOKEN_TTL = 600
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    request = DelistRequest.objects.get()
    assert services.sweep(now=request.token_expires_at - timedelta(seconds=1)).requests_expired == 0
    assert services.sweep(now=request.token_expires_at).requests_expired == 1
    request.refresh_from_db()
    assert request.state == State.EXPIRED
    response = client.get(link_path(confirmation_link(mailoutbox[-1])))
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_the_management_command_runs_one_sweep(approved, mailoutbox, capsys):
    DelistRequest.objects.filter(pk=approved.pk).update(effective_at=timezone.now())
    call_command("apply_due_delistings")
    assert "1 delisting(s) applied" in capsys.readouterr().out
    approved.refresh_from_db()
    assert approved.state == State.COMPLETED
    assert "has been removed" in mailoutbox[-1].subject  # sent by the sweep itself: nothing queued


def two_sweeps_at_once(*, timeout: float) -> list[int]:
    """What each of two threads' delistings_apply_due() applied, started together."""
    applied = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            applied.append(services.delistings_apply_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return applied


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_apply_each_request_once(listing, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locking needs PostgreSQL; SQLite serialises writers anyway")
    settings.DELIST_PROPAGATION_DELAY = 0
    count = 40
    for i in range(count):
        ip = f"81.2.70.{i + 1}"
        listing(ip)
        request = DelistRequest.objects.create(email=SENDER, ip=ip, state=State.NEEDS_REVIEW)
        request.entries.set(entries_covering(parse_ip(ip)))
        services.request_approve(request=request, actor="alice")

    applied = two_sweeps_at_once(timeout=60)
    assert sum(applied) == count
    assert DelistRequest.objects.filter(state=State.COMPLETED).count() == count
    assert Mail.objects.filter(kind=Mail.Kind.COMPLETED).count() == count  # one mail each, never two


def due_requests(count: int, *, first: int = 0, shared: Entry | None = None) -> list[DelistRequest]:
    """`count` approved requests due now, each covering a /32 of its own (and `shared`), in bulk."""
    now = timezone.now()
    entries = Entry.objects.bulk_create(
        [
            new_entry(ipaddress.ip_network(f"81.2.{n // 250}.{n % 250 + 1}/32"), listed_at=now)
            for n in range(first, first + count)
        ]
    )
    requests = DelistRequest.objects.bulk_create(
        [
            DelistRequest(
                email=SENDER,
                ip=entry.network.split("/")[0],
                state=State.APPROVED,
                decided_at=now,
                decided_by="rita",
                effective_at=now,
            )
            for entry in entries
        ]
    )
    covers = DelistRequest.entries.through
    links = [covers(delistrequest_id=r.pk, entry_id=e.pk) for r, e in zip(requests, entries, strict=True)]
    if shared is not None:
        links += [covers(delistrequest_id=r.pk, entry_id=shared.pk) for r in requests]
    covers.objects.bulk_create(links)
    return requests


def assert_applied_once(requests: list[DelistRequest]) -> None:
    """Each request completed with one event and one mail; each entry it covered delisted once,
    with one event naming the request its delisted_by names."""
    ids = {r.pk for r in requests}
    assert set(DelistRequest.objects.filter(state=State.COMPLETED).values_list("pk", flat=True)) == ids
    completed = list(Event.objects.filter(action=Event.Action.COMPLETED).values_list("request_id", flat=True))
    assert sorted(completed) == sorted(ids)
    mails = list(Mail.objects.filter(kind=Mail.Kind.COMPLETED).values_list("request_id", flat=True))
    assert sorted(mails) == sorted(ids)
    covered = Entry.objects.filter(delist_requests__in=ids).distinct()
    delisted = list(Event.objects.filter(action=Event.Action.DELISTED).values_list("entry_id", "request_id"))
    assert sorted(entry for entry, _request in delisted) == sorted(covered.values_list("pk", flat=True))
    by = dict(Entry.objects.filter(pk__in=[e for e, _r in delisted]).values_list("pk", "delisted_by"))
    assert all(by[entry] == f"delist request #{request}" for entry, request in delisted)


def test_an_entry_several_due_requests_cover_is_delisted_once_by_the_first(listing):
    shared = listing("81.2.0.0/16")
    requests = due_requests(3, shared=shared)
    assert services.delistings_apply_due() == 3
    assert_applied_once(requests)
    shared.refresh_from_db()
    assert shared.delisted_by == f"delist request #{requests[0].pk}"
    assert shared.events.filter(action=Event.Action.DELISTED).get().request_id == requests[0].pk


def test_an_entry_delisted_before_the_sweep_is_left_as_it_was(listing):
    shared = listing("81.2.0.0/16")
    requests = due_requests(2, shared=shared)
    entries_delist([shared.pk], actor="admin")
    shared.refresh_from_db()
    assert services.delistings_apply_due() == 2
    before = shared.delisted_at
    shared.refresh_from_db()
    assert (shared.delisted_at, shared.delisted_by) == (before, "admin")
    assert not shared.events.filter(action=Event.Action.DELISTED, request__isnull=False).exists()
    assert DelistRequest.objects.filter(state=State.COMPLETED).count() == len(requests)


def test_the_sweep_is_set_based_forty_requests_cost_the_queries_of_four(db):
    four = due_requests(4)
    with CaptureQueriesContext(connection) as queries_for_four:
        assert services.delistings_apply_due() == 4
    forty = due_requests(40, first=4)
    with CaptureQueriesContext(connection) as queries_for_forty:
        assert services.delistings_apply_due() == 40
    assert len(queries_for_forty) == len(queries_for_four)
    assert_applied_once(four + forty)


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_apply_a_thousand_requests_each_exactly_once(listing, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locking needs PostgreSQL; SQLite serialises writers anyway")
    # Two full batches (BATCH is 500), racing for the same rows and for one entry they all cover.
    shared = listing("81.2.0.0/16")
    requests = due_requests(2 * services.BATCH, shared=shared)
    applied = two_sweeps_at_once(timeout=120)
    assert len(applied) == 2 and sum(applied) == len(requests)
    assert_applied_once(requests)
    assert shared.events.filter(action=Event.Action.DELISTED).count() == 1
