"""On PostgreSQL an import batch is written set-based (COPY into a temporary table, then a few
statements); small batches and SQLite take the ORM path. Both must leave the same entries, the
same events and the same summary, and keep the import's promises: whole batches only, retries
after a collision, one ListVersion bump per batch that changes something.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from blocklist import audit, importing
from blocklist.importing import Row, import_file
from blocklist.ip import parse_network
from blocklist.models import Entry, Event, ListVersion
from blocklist.services import entries_delist, entry_list


def on_postgresql(test):
    """Marked postgres, and skipped elsewhere: the set-based path is PostgreSQL's."""
    skip = pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the set-based import path is PostgreSQL's"
    )
    return pytest.mark.postgres(skip(test))


ORM_ONLY = 10**9  # COPY_MIN no batch reaches
REASON = 'tab\there, back\\slash, \\N, "quoted", ünïcode'
MIXED_CSV = (
    "network,code,reason,expires_at,source\n"
    "5.61.14.7,5.7.607,spam trap,,traps\n"  # live with these very terms: unchanged
    "37.120.8.0/24,,new reason,,\n"  # live: updated
    "81.2.69.160,5.7.610,back again,,\n"  # delisted before: relisted
    "2a05:d018:1::/48,,,,\n"  # live but expired: closed, then relisted
    "91.198.174.0/24,,,2030-01-01,\n"  # the expiry it already has: unchanged
    "91.198.175.0/24,,,2031-06-01T12:00:00+02:00,\n"  # added
    f'2a05:d018:2::/64,5.7.620,"{REASON.replace(chr(34), chr(34) * 2)}",,\n'  # added
    "5.61.14.8,,,,\n"  # added
    "5.61.14.8,5.7.611,a repeat,,\n"  # a repeat within the batch: unchanged
    "10.0.0.1,,,,\n"  # rejected: private
    "5.61.14.9/24,,,,\n"  # rejected: host bits
    "5.61.14.10,5.7.700,,,\n"  # rejected: unknown code
    "5.61.14.11,,,2025-02-30,\n"  # rejected: no such day
    "5.61.14.12,,,\n"  # rejected: four columns
).encode()
MIXED_PLAIN = (
    b"# a plain list\n5.61.14.7\n37.120.8.0/24 # live\n81.2.69.160\n2a05:d018:1::/48\n"
    b"91.198.175.0/24\n2a05:d018:2::/64\n5.61.14.8\n5.61.14.8\n10.0.0.1\n5.61.14.9/24\n::ffff:5.61.14.0/120\n"
)


def listed_before() -> None:
    """Live, delisted and expired-but-live entries for the mixed lists to meet."""

    def listing(network: str, **fields) -> Entry:
        return entry_list(parse_network(network), actor="admin", **fields)[0]

    listing("5.61.14.7", code="5.7.607", reason="spam trap", source="traps")
    listing("37.120.8.0/24", reason="snowshoe")
    entries_delist([listing("81.2.69.160").pk], actor="admin", reason="fixed")
    listing("2a05:d018:1::/48", expires_at=datetime(2025, 1, 1, tzinfo=UTC))
    listing("91.198.174.0/24", expires_at=datetime(2030, 1, 1, tzinfo=UTC))


def state() -> tuple[list[tuple], list[tuple]]:
    """Every entry and event, without ids and clock readings, in an order both paths share."""
    generation: dict[int, int] = {}
    entries = []
    for entry in Entry.objects.order_by("network", "id"):
        generation[entry.pk] = sum(1 for e in entries if e[0] == entry.network)
        entries.append(
            (
                entry.network,
                entry.version,
                entry.network_start,
                entry.prefix_len,
                entry.code,
                entry.reason,
                entry.source,
                entry.expires_at,
                entry.self_service,
                entry.delisted_at is None,
                entry.delisted_by,
            )
        )
    events = sorted(
        (e.action, e.actor, e.reason, e.entry.network, generation[e.entry_id], e.request_id)
        for e in Event.objects.select_related("entry")
    )
    return entries, events


def import_both_ways(monkeypatch, content: bytes, name: str):
    """(summary, rejections, state) after importing on each path from the same start."""
    copies = []
    real_copy = importing._upsert_copy

    def counted(*args, **kwargs):
        copies.append(1)
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(importing, "_upsert_copy", counted)
    outcomes = {}
    for path, copy_min in (("orm", ORM_ONLY), ("copy", 1)):
        monkeypatch.setattr(importing, "COPY_MIN", copy_min)
        with transaction.atomic():
            listed_before()
            summary = import_file(io.BytesIO(content), name=name, source="feed")
            outcomes[path] = (str(summary), summary.rejections, state())
            transaction.set_rollback(True)  # the other path starts from the same entries
    assert len(copies) == 1  # the copy run took the set-based path, the other did not
    return outcomes["orm"], outcomes["copy"]


@on_postgresql
def test_a_mixed_csv_list_gives_the_same_summary_rows_and_events_on_both_paths(db, monkeypatch):
    orm, copy = import_both_ways(monkeypatch, MIXED_CSV, "list.csv")
    assert copy[0] == "added 3, unchanged 3, relisted 2, updated 1, rejected 5"
    assert copy == orm
    entries, events = copy[2]
    assert (entries[[e[0] for e in entries].index("2a05:d018:2::/64")][:7]) == (
        "2a05:d018:2::/64",
        6,
        "2a05d018000200000000000000000000",
        64,
        "5.7.620",
        REASON,
        "feed",
    )
    assert ("entry_expired", "worker", "", "2a05:d018:1::/48", 0, None) in events
    assert ("relisted", "import", "", "2a05:d018:1::/48", 1, None) in events
    assert ("updated", "import", "new reason", "37.120.8.0/24", 0, None) in events


@on_postgresql
def test_a_mixed_plain_list_gives_the_same_summary_rows_and_events_on_both_paths(db, monkeypatch):
    orm, copy = import_both_ways(monkeypatch, MIXED_PLAIN, "list.txt")
    assert copy[0] == "added 3, unchanged 3, relisted 2, updated 0, rejected 3"
    assert [line for line, _text, _why in copy[1]] == [10, 11, 12]
    assert copy == orm


@on_postgresql
def test_a_big_list_takes_the_set_based_path_by_default(db, tmp_path, capsys, monkeypatch):
    copies = []
    real_copy = importing._upsert_copy
    monkeypatch.setattr(importing, "_upsert_copy", lambda *a, **k: copies.append(1) or real_copy(*a, **k))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"81.2.{n // 250}.{n % 250 + 1}\n" for n in range(importing.COPY_MIN)))
    call_command("import_blocklist", str(listing))
    assert (
        capsys.readouterr().out.strip()
        == f"added {importing.COPY_MIN}, unchanged 0, relisted 0, updated 0, rejected 0"
    )
    assert copies == [1]
    assert Event.objects.filter(action="listed", actor="import").count() == importing.COPY_MIN


def numbered_list(tmp_path, count: int):
    path = tmp_path / "list.txt"
    path.write_text("".join(f"81.2.69.{n}\n" for n in range(1, count + 1)))
    return path


@on_postgresql
def test_a_database_failure_midway_leaves_whole_set_based_batches(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(importing, "BATCH", 10)
    monkeypatch.setattr(importing, "COPY_MIN", 1)
    real_changed = audit.active_set_changed
    calls = []

    def fail_in_the_second_batch():
        calls.append(1)
        if len(calls) == 2:  # the batch's entries and events are written by now: they must go too
            raise OperationalError("server closed the connection unexpectedly")
        real_changed()

    monkeypatch.setattr(audit, "active_set_changed", fail_in_the_second_batch)
    with pytest.raises(CommandError, match="stopped at line 11 by a database error"):
        call_command("import_blocklist", str(numbered_list(tmp_path, 35)))
    assert capsys.readouterr().out.strip() == "added 10, unchanged 0, relisted 0, updated 0, rejected 0"
    assert Entry.objects.count() == Event.objects.count() == 10

    monkeypatch.setattr(audit, "active_set_changed", real_changed)
    call_command("import_blocklist", str(numbered_list(tmp_path, 35)))
    assert capsys.readouterr().out.strip() == "added 25, unchanged 10, relisted 0, updated 0, rejected 0"


@on_postgresql
def test_a_set_based_batch_that_collides_is_rolled_back_and_done_again(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(importing, "BATCH", 10)
    monkeypatch.setattr(importing, "COPY_MIN", 1)
    real_upsert = importing._upsert
    attempts = []

    def collide_once(rows, **kwargs):
        attempts.append(rows[0].line)
        counts = real_upsert(rows, **kwargs)
        if len(attempts) == 2:  # after the COPY and the writes: the temporary table goes too
            raise IntegrityError(
                'duplicate key value violates unique constraint "entry_one_live_per_network"'
            )
        return counts

    monkeypatch.setattr(importing, "_upsert", collide_once)
    call_command("import_blocklist", str(numbered_list(tmp_path, 25)))
    assert capsys.readouterr().out.strip() == "added 25, unchanged 0, relisted 0, updated 0, rejected 0"
    assert attempts == [1, 11, 11, 21]
    assert Entry.objects.count() == Event.objects.count() == 25


@on_postgresql
def test_each_set_based_batch_that_changes_something_bumps_the_list_version_once(db, tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "BATCH", 10)
    monkeypatch.setattr(importing, "COPY_MIN", 1)

    def version() -> int:
        return ListVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0

    before = version()
    call_command("import_blocklist", str(numbered_list(tmp_path, 20)))
    assert version() == before + 2
    call_command("import_blocklist", str(numbered_list(tmp_path, 20)))  # nothing changes
    assert version() == before + 2


def test_staging_rows_hold_the_entries_new_entry_builds(db):
    # The set-based path builds no model instance per row: its rows must still be new_entry's.
    rows = [
        Row(1, parse_network("5.61.14.7")),
        Row(
            2, parse_network("37.120.8.0/24"), "5.7.610", "a reason", datetime(2030, 1, 1, tzinfo=UTC), "feed"
        ),
        Row(3, parse_network("2a05:d018::/32"), None, "why", None, None),
    ]
    now = timezone.now()
    fields = importing._entry_fields()
    built = [
        [getattr(importing._new_entry(row, default_source="upload", now=now), f.attname) for f in fields]
        for row in rows
    ]
    staged = list(importing._staging_rows(rows, default_source="upload", now=now))
    assert [cells[: len(fields)] for cells in staged] == [
        [
            value if importing._plain_value(f) else f.get_db_prep_save(value, connection)
            for f, value in zip(fields, row, strict=True)
        ]
        for row in built
    ]
    assert [cells[len(fields) :] for cells in staged] == [
        [row.code, row.reason, row.expires_at, row.source] for row in rows
    ]


@on_postgresql
def test_an_entry_delisted_between_classifying_and_locking_makes_the_batch_start_over(
    db, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(importing, "COPY_MIN", 1)
    live = entry_list(parse_network("5.61.14.7"), actor="admin", reason="old")[0]
    statements = []

    def delist_first_time(execute, sql, params, many, context):
        statements.append(sql.split()[0])
        if "FOR UPDATE" in sql and statements.count("SELECT") == 2:  # as another writer would
            with connection.cursor() as cursor:
                cursor.execute("UPDATE blocklist_entry SET delisted_at = now() WHERE id = %s", [live.pk])
        return execute(sql, params, many, context)

    listing = tmp_path / "list.csv"
    listing.write_text("5.61.14.7,,new reason,,\n")
    with connection.execute_wrapper(delist_first_time):
        call_command("import_blocklist", str(listing))
    # The first attempt found its entry gone when it came to lock it, and was rolled back whole
    # (the delisting with it, in this one-connection stand-in); the second updated the entry.
    assert capsys.readouterr().out.strip() == "added 0, unchanged 0, relisted 0, updated 1, rejected 0"
    assert statements.count("CREATE") == 4  # two attempts, two temporary tables each
    assert Entry.objects.get().reason == "new reason"
