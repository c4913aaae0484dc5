"""Webhooks: events written with the change they report, delivered signed to a real HTTP receiver
on loopback (WEBHOOK_ALLOW_PRIVATE on), exactly once per endpoint, retried with backoff."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse

from blocklist.ip import parse_network
from blocklist.models import Entry
from blocklist.services import entries_delist, entry_list
from requests_app import services
from requests_app.models import State
from tests.conftest import IN_RANGE_IP, LISTED_IP
from tests.webhook_receiver import BadSignature, Receiver, verify
from webhooks import outbox
from webhooks.models import Delivery, Endpoint, Event, EventType

ALL_EVENTS = [t.value for t in EventType]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    instance = Receiver().start()
    yield instance
    instance.stop()


@pytest.fixture
def endpoint(db, receiver):
    def make(path: str = "/hook", events=None, **fields) -> Endpoint:
        fields.setdefault("name", f"receiver {path}")
        return Endpoint.objects.create(url=receiver.url(path), events=events or ALL_EVENTS, **fields)

    return make


def list_ip(network: str = LISTED_IP) -> Entry:
    entry, _outcome = entry_list(parse_network(network), actor="admin", reason="spam trap hits")
    return entry


def test_a_listing_reaches_the_receiver_signed_and_the_signature_verifies(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    hook = endpoint()
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        # The commit wakes the worker (eager here), which delivers at once.
        entry = list_ip()
        now = T0.timestamp()

    [post] = receiver.posts()
    payload = verify(hook.secret, post, now=now)
    assert payload == {
        "type": "entry.listed",
        "id": str(Event.objects.get().uid),
        "at": T0.isoformat(),
        "data": {
            "id": entry.pk,
            "network": f"{LISTED_IP}/32",
            "code": "5.7.606",
            "reason": "spam trap hits",
            "listed_at": T0.isoformat(),
            "expires_at": None,
        },
    }
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Delist-Timestamp"] == str(int(now))
    # A receiver refuses a body someone changed, a wrong secret, and a replay an hour later.
    tampered = post.__class__(post.method, post.path, post.headers, post.body.replace(b"spam", b"ham!"))
    for secret, received, at in (
        (hook.secret, tampered, now),
        ("not-the-secret", post, now),
        (hook.secret, post, now + 3600),
    ):
        with pytest.raises(BadSignature):
            verify(secret, received, now=at)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Delivery.Status.DELIVERED,
        1,
        200,
    )


def test_without_a_subscribed_endpoint_nothing_is_written(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint(events=["request.completed"])
    endpoint("/off", active=False)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        list_ip()
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert not callbacks  # nothing to wake the worker for
    assert receiver.received == []


def test_each_endpoint_gets_the_event_types_it_chose_once_each(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    everything = endpoint("/all")
    delistings = endpoint("/delistings", events=["entry.delisted"])
    with django_capture_on_commit_callbacks(execute=True):
        entry = list_ip()
    with django_capture_on_commit_callbacks(execute=True):
        entries_delist([entry.pk], actor="admin", reason="cleaned up")
    with django_capture_on_commit_callbacks(execute=True):
        entries_delist([entry.pk], actor="admin")  # already delisted: no new event

    assert [r.json()["type"] for r in receiver.posts("/all")] == ["entry.listed", "entry.delisted"]
    [delisted] = receiver.posts("/delistings")
    data = verify(delistings.secret, delisted, now=datetime.now(UTC).timestamp())["data"]
    assert data["id"] == entry.pk and data["network"] == f"{LISTED_IP}/32" and data["delisted_at"]
    # The same event, under the same id, to both endpoints, each signed with its own secret.
    assert delisted.json()["id"] == receiver.posts("/all")[1].json()["id"]
    assert delisted.headers["X-Delist-Signature"] != receiver.posts("/all")[1].headers["X-Delist-Signature"]
    assert Delivery.objects.filter(endpoint=everything).count() == 2


def test_a_request_in_review_and_a_completed_one_are_reported(
    endpoint, receiver, confirmed, settings, django_capture_on_commit_callbacks
):
    endpoint(events=["request.needs_review", "request.completed", "entry.delisted"])
    settings.DELIST_PROPAGATION_DELAY = 0
    in_review = confirmed(IN_RANGE_IP)
    self_service = confirmed(LISTED_IP)
    assert (in_review.state, self_service.state) == (State.NEEDS_REVIEW, State.APPROVED)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.delistings_apply_due() == 1

    by_type = {r.json()["type"]: r.json()["data"] for r in receiver.posts()}
    assert set(by_type) == {"request.needs_review", "request.completed", "entry.delisted"}
    assert by_type["request.needs_review"]["id"] == in_review.pk
    assert by_type["request.needs_review"]["ip"] == IN_RANGE_IP
    assert by_type["request.needs_review"]["networks"] == ["37.120.8.0/24"]
    assert by_type["request.needs_review"]["reason"]
    assert by_type["request.completed"] == {
        "id": self_service.pk,
        "ip": LISTED_IP,
        "completed_at": by_type["request.completed"]["completed_at"],
        "networks": [f"{LISTED_IP}/32"],
    }
    assert by_type["entry.delisted"]["network"] == f"{LISTED_IP}/32"
    assert "email" not in str(by_type)  # receivers learn no sender's address


def test_a_sweep_batch_writes_its_events_in_a_constant_number_of_queries(endpoint, listing):
    from django.test.utils import CaptureQueriesContext

    endpoint(events=["entry.delisted"])
    few = [listing(f"81.2.{n}.0/24").pk for n in range(3)]
    many = [listing(f"81.3.{n}.0/24").pk for n in range(30)]
    counts = []
    for ids in (few, many):
        with CaptureQueriesContext(connection) as queries:
            entries_delist(ids, actor="admin")
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert Event.objects.filter(type="entry.delisted").count() == 33


def test_a_receiver_answering_500_is_retried_with_backoff_until_it_takes_it(endpoint, receiver):
    endpoint()
    receiver.answers = [500, 503]
    with time_machine.travel(T0, tick=False) as clock:
        list_ip()  # not committed in this test: nothing wakes the worker, we send by hand
        assert outbox.deliveries_send_due() == 0
        delivery = Delivery.objects.get()
        assert (delivery.attempts, delivery.last_status_code) == (1, 500)
        assert delivery.due_at == T0 + timedelta(seconds=30)
        assert "HTTP 500" in delivery.last_error

        clock.move_to(T0 + timedelta(seconds=29))
        assert outbox.deliveries_send_due() == 0
        assert len(receiver.posts()) == 1  # not due yet: not tried

        clock.move_to(T0 + timedelta(seconds=30))
        assert outbox.deliveries_send_due() == 0
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.last_status_code) == (2, 503)
        assert delivery.due_at == T0 + timedelta(seconds=30 + 60)  # twice as long

        clock.move_to(T0 + timedelta(seconds=90))
        assert outbox.deliveries_send_due() == 1
        assert outbox.deliveries_send_due() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Delivery.Status.DELIVERED,
        3,
        200,
    )
    assert delivery.last_error == ""
    # Three attempts of one event: the same id each time, so the receiver can deduplicate.
    assert len({r.json()["id"] for r in receiver.posts()}) == 1 and len(receiver.posts()) == 3
    assert outbox.backlog() == 0


def test_a_receiver_that_is_down_gets_its_events_once_it_is_back(endpoint, receiver):
    endpoint()
    receiver.stop()  # nothing listens on its port now
    with time_machine.travel(T0, tick=False) as clock:
        list_ip()
        list_ip("81.2.69.0/24")
        assert outbox.deliveries_send_due() == 0
        assert outbox.backlog() == 2
        for delivery in Delivery.objects.all():
            assert delivery.attempts == 1 and delivery.last_status_code is None
            assert "ConnectionRefusedError" in delivery.last_error

        clock.move_to(T0 + timedelta(seconds=30))
        receiver.start()
        assert outbox.deliveries_send_due() == 2
    assert len(receiver.posts()) == 2
    assert {r.json()["data"]["network"] for r in receiver.posts()} == {f"{LISTED_IP}/32", "81.2.69.0/24"}
    assert outbox.backlog() == 0


def test_a_delivery_is_given_up_after_two_days_and_the_desk_can_retry_it(endpoint, receiver, admin_client):
    endpoint()
    receiver.answers = [500] * 100
    with time_machine.travel(T0, tick=False) as clock:
        list_ip()
        attempts = 0
        while Delivery.objects.get().status == Delivery.Status.PENDING:
            clock.move_to(Delivery.objects.get().due_at)
            outbox.deliveries_send_due()
            attempts += 1
        delivery = Delivery.objects.get()
        assert delivery.status == Delivery.Status.FAILED
        # 30 s, 1, 2, ... 32 min, then hourly: given up with the retry that would pass 48 hours.
        assert delivery.failed_at < T0 + timedelta(hours=48) <= delivery.failed_at + timedelta(hours=1)
        assert attempts == delivery.attempts == len(receiver.posts())

        receiver.answers = []
        response = admin_client.post(
            reverse("admin:webhooks_delivery_changelist"),
            {"action": "retry_now", "_selected_action": [delivery.pk]},
            follow=True,
        )
        assert "1 delivery will be tried again now." in response.content.decode()
        assert outbox.deliveries_send_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    # Delivered is final: retrying it sends nothing twice.
    assert outbox.deliveries_retry_now([delivery.pk]) == 0


def test_a_sender_that_died_mid_delivery_hands_it_back_when_its_lease_runs_out(endpoint, receiver):
    endpoint()
    with time_machine.travel(T0, tick=False) as clock:
        list_ip()
        # A sender claims the delivery and dies before it records anything.
        [claimed] = outbox._claim_due(now=T0, lease=outbox.LEASE)
        assert outbox.deliveries_send_due() == 0 and receiver.received == []
        # While the lease holds, "retry now" leaves it to its sender: it would go out twice.
        assert outbox.deliveries_retry_now([claimed]) == 0
        clock.move_to(T0 + outbox.LEASE)
        assert outbox.deliveries_send_due() == 1
    assert len(receiver.posts()) == 1
    assert Delivery.objects.get().attempts == 2


def test_a_redirect_is_a_failed_delivery_and_is_not_followed(endpoint, receiver):
    endpoint()
    receiver.answers = [302]
    receiver.location = receiver.url("/elsewhere")
    list_ip()
    assert outbox.deliveries_send_due() == 0
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING and delivery.last_status_code == 302
    assert "redirect" in delivery.last_error
    assert [r.path for r in receiver.received] == ["/hook"]


def test_an_inactive_endpoint_holds_its_deliveries(endpoint, receiver):
    hook = endpoint()
    list_ip()
    Endpoint.objects.filter(pk=hook.pk).update(active=False)
    assert outbox.deliveries_send_due() == 0 and receiver.received == []
    Endpoint.objects.filter(pk=hook.pk).update(active=True)
    assert outbox.deliveries_send_due() == 1 and len(receiver.posts()) == 1


def test_the_delivery_log_in_the_admin(endpoint, receiver, admin_client):
    hook = endpoint()
    receiver.answers = [500]
    list_ip()
    outbox.deliveries_send_due()
    page = admin_client.get(reverse("admin:webhooks_delivery_changelist"), {"endpoint__id__exact": hook.pk})
    text = page.content.decode()
    assert page.status_code == 200 and "HTTP 500" in text and "an entry was listed" in text
    assert (
        admin_client.get(reverse("admin:webhooks_delivery_changelist"), {"status__exact": "delivered"})
        .context["cl"]
        .result_count
        == 0
    )
    delivery = Delivery.objects.get()
    assert admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])).status_code == 200
    assert (
        admin_client.get(reverse("admin:webhooks_event_change", args=[delivery.event_id])).status_code == 200
    )
    # Read-only: the log cannot be edited or deleted, and endpoints are deactivated, not deleted.
    assert admin_client.post(reverse("admin:webhooks_delivery_delete", args=[delivery.pk])).status_code == 403
    assert admin_client.post(reverse("admin:webhooks_endpoint_delete", args=[hook.pk])).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_senders_at_once_deliver_each_event_exactly_once_per_endpoint(receiver):
    if connection.vendor != "postgresql":
        pytest.skip("row locking needs PostgreSQL; SQLite serialises writers anyway")
    endpoints = [
        Endpoint.objects.create(name=path, url=receiver.url(path), events=ALL_EVENTS) for path in ("/a", "/b")
    ]
    # More than two batches, written as emit writes them (without waking a worker: the two
    # senders below race for them instead).
    events = Event.objects.bulk_create(
        [Event(type="entry.listed", data={"n": n}, uid=uuid.uuid4()) for n in range(3 * outbox.BATCH // 2)]
    )
    Delivery.objects.bulk_create([Delivery(event=e, endpoint=ep) for e in events for ep in endpoints])
    receiver.delay = 0.002
    barrier = threading.Barrier(2)
    delivered = []

    def sender():
        try:
            barrier.wait()
            delivered.append(outbox.deliveries_send_due(budget=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(delivered) == 2 * len(events)
    assert all(delivered)  # both took part
    for path in ("/a", "/b"):
        ids = [r.json()["id"] for r in receiver.posts(path)]
        assert sorted(ids) == sorted(str(e.uid) for e in events)  # every event, none twice
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED, attempts=1).count() == 2 * len(events)
