"""GET /api/v1/changes: the active set with a cursor, then what was listed and delisted since.

These tests commit for real (transactional_db): on PostgreSQL the stream only hands out the
changes of finished transactions, and a test wrapped in one transaction would never finish.
"""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import timedelta

import psycopg2
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from blocklist import changes
from blocklist.api_keys import api_key_create
from blocklist.formats import entry_api_json
from blocklist.ip import parse_network
from blocklist.models import Entry
from blocklist.services import entries_delist, entries_expire, entry_list, entry_update, new_entry

CHANGES = reverse("blocklist:api_changes")
pytestmark = pytest.mark.django_db(transaction=True)


def list_network(network: str, **terms) -> Entry:
    return entry_list(parse_network(network), actor="admin", **terms)[0]


class Consumer:
    """A machine following the stream as the contract tells it to: the snapshot once, then
    each poll with the cursor it got last, keeping its own copy of the active set."""

    def __init__(self, client, key: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {key}"}
        self.active: dict[int, dict] = {}
        self.removals: list[dict] = []
        self.cursor = None

    def start(self) -> dict:
        response = self.client.get(CHANGES, headers=self.headers)
        assert response.status_code == 200 and response.streaming
        body = json.loads(b"".join(response.streaming_content))
        self.active = {item["id"]: item for item in body["listed"]}
        self.cursor = body["cursor"]
        return body

    def poll(self) -> dict:
        response = self.client.get(CHANGES, {"cursor": self.cursor}, headers=self.headers)
        assert response.status_code == 200, response.content
        body = response.json()
        for item in body["listed"]:
            self.active[item["id"]] = item
        for item in body["delisted"]:
            self.active.pop(item["id"], None)
        self.removals += body["delisted"]
        self.cursor = body["cursor"]
        return body

    def networks(self) -> set[str]:
        return {item["network"] for item in self.active.values()}

    def poll_until(self, predicate, timeout: float = 10) -> None:
        # On PostgreSQL a change shows once every transaction that began before it has ended;
        # other sessions on a shared server may hold one open for a moment.
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if predicate(self) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert predicate(self), self.active


@pytest.fixture
def consumer(client):
    return Consumer(client, api_key_create(name="feed", scope="read")[1])


def test_without_a_cursor_it_streams_the_active_set_as_the_api_shows_entries(client, consumer):
    kept = [list_network("5.61.14.7"), list_network("37.120.8.0/24", reason="snowshoe", self_service=False)]
    entries_delist([list_network("81.2.69.160").pk], actor="admin", reason="gone")
    list_network("81.2.69.161", expires_at=timezone.now() + timedelta(hours=1))
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        response = client.get(CHANGES, headers=consumer.headers)  # past its expiry, no sweep yet
        raw = b"".join(response.streaming_content).decode()  # the snapshot is read as it streams
    assert response["Content-Type"] == "application/json"
    body = json.loads(raw)
    expected = {"cursor": body["cursor"], "listed": [entry_api_json(e) for e in kept], "delisted": []}
    assert raw == json.dumps(expected) + "\n"


def test_the_snapshot_is_read_a_chunk_at_a_time(client, consumer, monkeypatch):
    monkeypatch.setattr(changes, "CHUNK_SIZE", 2)
    for n in range(5):
        list_network(f"81.2.69.{n}")
    chunks = list(client.get(CHANGES, headers=consumer.headers).streaming_content)
    # The head, three chunks of entries, the tail.
    assert len(chunks) == 5
    assert len(json.loads(b"".join(chunks))["listed"]) == 5


def test_a_consumer_sees_listings_changes_and_delistings_in_its_next_poll(consumer):
    single = list_network("5.61.14.7")
    consumer.start()
    assert consumer.networks() == {"5.61.14.7/32"}

    added = list_network("37.120.8.0/24", reason="snowshoe")
    consumer.poll_until(lambda c: "37.120.8.0/24" in c.networks())
    assert consumer.active[added.pk]["reason"] == "snowshoe"

    entry_update(Entry.objects.get(pk=added.pk), actor="admin", reason="snowshoe, still")
    consumer.poll_until(lambda c: c.active[added.pk]["reason"] == "snowshoe, still")

    entries_delist([single.pk], actor="admin", reason="fixed")
    consumer.poll_until(lambda c: "5.61.14.7/32" not in c.networks())
    assert consumer.networks() == {"37.120.8.0/24"}


def test_a_delisting_comes_with_its_id_network_and_time(consumer):
    entry = list_network("5.61.14.7")
    consumer.start()
    entries_delist([entry.pk], actor="admin", reason="fixed")
    entry.refresh_from_db()
    consumer.poll_until(lambda c: c.removals)
    assert consumer.removals == [
        {"id": entry.pk, "network": "5.61.14.7/32", "delisted_at": entry.delisted_at.isoformat()}
    ]


def test_an_expiry_closed_by_the_sweep_is_a_delisting(consumer):
    entry = list_network("5.61.14.7", expires_at=timezone.now() + timedelta(hours=1))
    consumer.start()
    assert entry.pk in consumer.active
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        assert entries_expire() == 1
        consumer.poll_until(lambda c: entry.pk not in c.active)


def test_an_import_shows_in_the_stream(consumer, tmp_path):
    consumer.start()
    listing = tmp_path / "list.txt"
    listing.write_text("# traps\n81.2.69.0/24\n5.61.14.7\n")
    call_command("import_blocklist", str(listing), stdout=io.StringIO(), stderr=io.StringIO())
    consumer.poll_until(lambda c: c.networks() == {"81.2.69.0/24", "5.61.14.7/32"})


def test_a_poll_with_nothing_new_is_one_query(client, settings, django_assert_num_queries):
    # The export token is a read key that needs no query, so this counts the stream alone.
    settings.EXPORT_TOKEN = "s3cret-export-token"
    list_network("5.61.14.7")
    consumer = Consumer(client, "s3cret-export-token")
    consumer.start()
    consumer.poll_until(lambda c: True)
    with django_assert_num_queries(1):
        body = consumer.poll()
    assert (body["listed"], body["delisted"], body["more"]) == ([], [], False)


def test_the_poll_query_is_answered_by_an_index(db):
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN's plan names are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(
                "EXPLAIN SELECT id FROM blocklist_event WHERE entry_id IS NOT NULL "
                "AND (xact, id) > ('5'::xid8, 0) AND xact < '100'::xid8 ORDER BY xact, id LIMIT 10"
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
    assert "event_change_stream_idx" in plan, plan


def test_a_consumer_far_behind_is_paged(consumer, monkeypatch):
    consumer.start()
    monkeypatch.setattr(changes, "PAGE", 2)
    for n in range(5):
        list_network(f"81.2.69.{n}")
    pages = []
    deadline = time.monotonic() + 10
    while len(consumer.networks()) < 5 and time.monotonic() < deadline:
        pages.append(consumer.poll())
    assert consumer.networks() == {f"81.2.69.{n}/32" for n in range(5)}
    assert any(page["more"] for page in pages)
    assert all(len(page["listed"]) <= 2 for page in pages)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "x" * 500,
        "djEucy4xLjI=====",
        "dj\u00e9",
        "djEucy4tMS4y",
        "djEucy4xLjk5OTk5OTk5OTk5OTk5OTk5OTk5",
    ],
)
def test_a_bad_cursor_is_a_400(client, consumer, cursor):
    response = client.get(CHANGES, {"cursor": cursor}, headers=consumer.headers)
    assert response.status_code == 400
    assert response.json()["fields"]["cursor"]


def test_a_cursor_from_the_other_database_kind_is_refused(client, consumer):
    other = "s" if connection.vendor == "postgresql" else "p"
    forged = base64.urlsafe_b64encode(f"v1.{other}.1.2".encode()).decode().rstrip("=")
    assert client.get(CHANGES, {"cursor": forged}, headers=consumer.headers).status_code == 400


def test_a_cursor_names_a_position_only_so_it_outlives_the_process():
    position = changes.Position(12345, 678)
    assert changes.parse_cursor(changes.encode_cursor(position)) == position


def test_an_event_that_commits_after_a_later_one_is_not_skipped(consumer):
    """A transaction that wrote its event first but commits last (as the import's bulk SQL
    can) is not jumped over by a cursor that already saw the later event."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's writers take turns: no transaction commits out of order there")
    consumer.start()
    slow = psycopg2.connect(
        dbname=connection.settings_dict["NAME"],
        user=connection.settings_dict["USER"],
        host=connection.settings_dict["HOST"],
        port=connection.settings_dict["PORT"] or 5432,
    )
    try:
        early = new_entry(parse_network("81.2.69.0/24"), listed_at=timezone.now())
        with slow.cursor() as cursor:
            cursor.execute(
                "INSERT INTO blocklist_entry (network, version, network_start, prefix_len, reason, code, "
                "source, listed_at, self_service, delisted_by) VALUES (%s, %s, %s, %s, '', '5.7.606', '', "
                "%s, true, '') RETURNING id",
                [early.network, early.version, early.network_start, early.prefix_len, early.listed_at],
            )
            early_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO blocklist_event (at, action, actor, reason, entry_id) "
                "VALUES (now(), 'listed', 'import', '', %s) RETURNING id",
                [early_id],
            )
            early_event = cursor.fetchone()[0]
        late = list_network("5.61.14.7")  # a later event id, committed first
        assert late.events.get().pk > early_event
        consumer.poll()
        assert consumer.networks() == set(), "handed out a change while an older one was in flight"
        slow.commit()
    finally:
        slow.close()
    consumer.poll_until(lambda c: c.networks() == {"81.2.69.0/24", "5.61.14.7/32"})
