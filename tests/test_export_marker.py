"""The exports in EXPORT_DIR know which version of the list they hold, so they never go stale.

Every change to the active set bumps one counter (ListVersion) under a row lock in its own
transaction; the writer records the version it read before writing, and writes again when the
counter has moved. Interrupted writes leave temp files that the next refresh clears.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from blocklist import audit
from blocklist.exports import FILE_NAMES, MARKER, STALE_TEMP_AGE, exports_refresh_if_changed, list_version
from blocklist.ip import parse_network
from blocklist.services import entries_delist, entries_expire, entry_list, entry_update
from requests_app import services


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


def plain(export_dir) -> list[str]:
    return (export_dir / "blocklist.txt").read_text().split()


def test_every_change_to_the_active_set_moves_the_version_and_nothing_else_does(listing, tmp_path):
    versions = [list_version()]

    def moved() -> bool:
        versions.append(list_version())
        return versions[-1] > versions[-2]

    entry = listing("5.61.14.7")
    assert moved()
    entry_update(entry, actor="admin", reason="spam trap")
    assert moved()
    entries_delist([entry.pk], actor="admin")
    assert moved()
    listing("37.120.8.0/24", expires_at=timezone.now() + timedelta(hours=1))
    assert moved()
    entries_expire(now=timezone.now() + timedelta(hours=2))
    assert moved()
    listing_file = tmp_path / "list.txt"
    listing_file.write_text("81.2.69.160\n")
    call_command("import_blocklist", str(listing_file))
    assert moved()

    # What leaves the active set as it was: a repeated import, a sweep with nothing due.
    call_command("import_blocklist", str(listing_file))
    assert not moved()
    services.sweep()
    assert not moved()
    entries_delist([entry.pk], actor="admin")  # already delisted
    assert not moved()


def test_an_entry_whose_expiry_passes_leaves_the_exports_at_the_next_sweep(listing, export_dir):
    now = timezone.now()
    listing("5.61.14.7", expires_at=now + timedelta(minutes=5))
    listing("37.120.8.0/24")
    exports_refresh_if_changed()
    assert plain(export_dir) == ["5.61.14.7/32", "37.120.8.0/24"]
    services.sweep(now=now + timedelta(minutes=10))
    assert plain(export_dir) == ["37.120.8.0/24"]


def test_the_marker_names_the_version_the_files_hold(listed, export_dir):
    exports_refresh_if_changed()
    assert (export_dir / MARKER).read_text() == f"version {list_version()}\n"


def test_a_marker_an_older_portal_wrote_is_not_trusted(listed, export_dir):
    exports_refresh_if_changed()
    # Before, the marker held a bare event id: one that happens to equal the version proves nothing.
    (export_dir / MARKER).write_text(str(list_version()))
    assert len(exports_refresh_if_changed()) == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_change_that_commits_after_a_later_one_was_exported_is_exported_next(export_dir, monkeypatch):
    """T1 lists a network and holds its transaction open; T2 delists another and commits.

    Ids come from a sequence in the order asked, not the order committed: with "the newest
    event id" as the marker, an export run now shows T2's change and records T2's id, and once
    T1 commits (with a lower id) nothing looks new. With the counter, T2's bump waits for T1's
    row lock, so the export cannot record a version that T1's change is missing from.
    """
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent transactions; SQLite serialises writers anyway")
    monkeypatch.setattr(audit, "_queue_exports_refresh", lambda: None)  # the test runs each refresh
    kept, _outcome = entry_list(parse_network("5.61.14.7"), actor="admin")
    exports_refresh_if_changed()
    assert plain(export_dir) == ["5.61.14.7/32"]

    t1_changed, t1_may_commit = threading.Event(), threading.Event()
    t2_backend: list[int] = []
    errors: list[BaseException] = []

    def t1() -> None:
        try:
            with transaction.atomic():
                entry_list(parse_network("81.2.69.160"), actor="t1")
                t1_changed.set()
                assert t1_may_commit.wait(30)
        except BaseException as e:  # noqa: BLE001  (reported by the test below)
            errors.append(e)
        finally:
            t1_changed.set()
            connection.close()

    def t2() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                t2_backend.append(cursor.fetchone()[0])
            entries_delist([kept.pk], actor="t2")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    first = threading.Thread(target=t1)
    first.start()
    assert t1_changed.wait(30) and not errors
    second = threading.Thread(target=t2)
    second.start()
    # Go on once T2 has committed, or is stuck waiting for a lock that T1 holds.
    deadline = time.monotonic() + 30
    while second.is_alive() and not _waits_for_a_lock(t2_backend):
        assert time.monotonic() < deadline, "T2 neither committed nor waited"
        time.sleep(0.02)

    exports_refresh_if_changed()  # the worker's refresh, while T1 is still open
    t1_may_commit.set()
    first.join(30)
    second.join(30)
    assert not errors and not first.is_alive() and not second.is_alive()

    exports_refresh_if_changed()
    assert plain(export_dir) == ["81.2.69.160/32"]  # T1's listing and T2's delisting, both


def _waits_for_a_lock(backend: list[int]) -> bool:
    if not backend:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", backend)
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_old_temp_files_of_an_interrupted_write_are_removed_by_the_next_refresh(listed, export_dir):
    exports_refresh_if_changed()
    ours_old = [export_dir / ".blocklist.txt.k2j4_9xa.tmp", export_dir / ".blocklist.rbldnsd.abc12345.tmp"]
    ours_new = export_dir / ".blocklist.json.zz8q1m0p.tmp"  # may be a write in progress elsewhere
    others = [
        export_dir / ".notes.abc12345.tmp",
        export_dir / "blocklist.txt.abc12345.tmp",
        export_dir / "blocklist.txt.bak",
    ]
    for path in [*ours_old, ours_new, *others]:
        path.write_text("half a list\n")
    for path in [*ours_old, *others]:
        _age(path, STALE_TEMP_AGE + 30)

    assert exports_refresh_if_changed() == []  # nothing changed: the files stay, the strays go
    assert not any(path.exists() for path in ours_old)
    assert ours_new.exists() and all(path.exists() for path in others)

    _age(ours_new, STALE_TEMP_AGE + 30)
    exports_refresh_if_changed()
    assert not ours_new.exists()
    assert sorted(p.name for p in export_dir.iterdir() if not p.name.startswith(".")) == sorted(
        [*FILE_NAMES.values(), "blocklist.txt.abc12345.tmp", "blocklist.txt.bak"]
    )


def test_the_export_command_clears_the_old_temp_files_of_its_own_target(listed, tmp_path):
    target = tmp_path / "custom.cidr"
    stray, other = tmp_path / ".custom.cidr.q1w2e3r4.tmp", tmp_path / ".blocklist.txt.q1w2e3r4.tmp"
    for path in (stray, other):
        path.write_text("half a list\n")
        _age(path, STALE_TEMP_AGE + 30)
    call_command("export_blocklist", "--format", "postfix", "--output", str(target))
    assert target.exists() and not stray.exists()
    assert other.exists()  # another target's: not this write's business
