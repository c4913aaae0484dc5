"""import_blocklist against files that are broken, hostile or not lists at all.

Each bad line is rejected with its number and why while the good ones are imported; a file
that is no list is a clear error before anything is written; and a failure midway leaves
whole batches only. Never a traceback.
"""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, OperationalError

from blocklist import audit, importing
from blocklist.importing import MAX_LINE, blocklist_import
from blocklist.models import Entry, Event

ROOT = Path(__file__).resolve().parent.parent


def run_import(path: Path, capsys, *args: str) -> tuple[str, str]:
    call_command("import_blocklist", str(path), *args)
    out = capsys.readouterr()
    return out.out.strip(), out.err


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "expiry",
    [
        "2025-02-30",  # no such day
        "2025-13-01",
        "2025-02-28T25:00",
        "2025-01-01T00:00+25:00",  # no such offset
        "9999-12-31T23:00-05:00",  # past the end of the calendar once in UTC
    ],
)
def test_an_impossible_expiry_is_a_rejected_line(db, tmp_path, capsys, expiry):
    listing = write(tmp_path, "list.csv", f"5.61.14.7,,,{expiry},\n37.120.8.0/24,,,,\n".encode())
    summary, errors = run_import(listing, capsys)
    assert summary == "added 1, unchanged 0, relisted 0, updated 0, rejected 1"
    assert f"line 1: '5.61.14.7,,,{expiry},' rejected: expires_at {expiry!r} is not a valid date" in errors
    assert list(Entry.objects.values_list("network", flat=True)) == ["37.120.8.0/24"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("5.61.14.7,,,,{}".format("s" * 101), "source is longer than 100 characters"),
        ("5.61.14.7,,{},,".format("r" * 501), "reason is longer than 500 characters"),
        ("5.61.14.7,5.7.606,spam", "3 columns; expected 5 (network,code,reason,expires_at,source)"),
        ("5.61.14.7,,,,,extra", "6 columns; expected 5"),
        ('5.61.14.7,,"a reason that never closes,,', "a quoted field is not closed on this line"),
        ('5.61.14.7,,"quoted"tail,,', "not a CSV line"),
    ],
)
def test_a_bad_csv_line_is_rejected_with_its_number_and_the_next_line_still_counts(
    db, tmp_path, capsys, line, why
):
    listing = write(tmp_path, "list.csv", f"81.2.69.160,,,,\n{line}\n37.120.8.0/24,,,,\n".encode())
    summary, errors = run_import(listing, capsys)
    assert summary == "added 2, unchanged 0, relisted 0, updated 0, rejected 1"
    assert "line 2: " in errors and why in errors
    assert set(Entry.objects.values_list("network", flat=True)) == {"81.2.69.160/32", "37.120.8.0/24"}


def test_a_network_alone_is_a_complete_csv_line(db, tmp_path, capsys):
    listing = write(tmp_path, "list.csv", b"network\n5.61.14.7\n")
    summary, _errors = run_import(listing, capsys, "--source", "feed")
    assert summary == "added 1, unchanged 0, relisted 0, updated 0, rejected 0"
    assert Entry.objects.get().source == "feed"


def test_a_header_in_another_order_stops_the_import_before_anything_is_written(db, tmp_path):
    listing = write(
        tmp_path, "list.csv", b"network,reason,code,expires_at,source\n5.61.14.7,spam,5.7.607,,\n"
    )
    with pytest.raises(CommandError, match="header names the columns network,reason,code"):
        call_command("import_blocklist", str(listing))
    assert not Entry.objects.exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("list.csv", b"\xef\xbb\xbfnetwork,code,reason,expires_at,source\r\n5.61.14.7,5.7.607,trap,,\r\n"),
        ("list.txt", b"\xef\xbb\xbf5.61.14.7\r\n"),
    ],
)
def test_a_utf8_bom_before_the_first_line_is_ignored(db, tmp_path, capsys, name, content):
    summary, errors = run_import(write(tmp_path, name, content), capsys)
    assert summary == "added 1, unchanged 0, relisted 0, updated 0, rejected 0", errors
    assert Entry.objects.get().network == "5.61.14.7/32"


def test_blank_csv_cells_keep_what_the_live_entry_has(db, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("5.61.14.7,5.7.607,spam trap,2030-01-01,traps\n")
    run_import(listing, capsys)
    terms = ("5.7.607", "spam trap", datetime(2030, 1, 1, tzinfo=UTC), "traps")

    def current():
        entry = Entry.objects.get(delisted_at__isnull=True)
        return (entry.code, entry.reason, entry.expires_at, entry.source)

    # Every cell blank, the network alone, and a plain line: each states nothing new.
    for content in ("5.61.14.7,,,,\n", "5.61.14.7\n", "network\n5.61.14.7\n"):
        listing.write_text(content)
        summary, _errors = run_import(listing, capsys)
        assert summary == "added 0, unchanged 1, relisted 0, updated 0, rejected 0", content
        assert current() == terms
    (tmp_path / "list.txt").write_text("5.61.14.7\n")
    assert run_import(tmp_path / "list.txt", capsys)[0].startswith("added 0, unchanged 1")

    # One cell given: only that term changes.
    listing.write_text("5.61.14.7,,new reason,,\n")
    summary, _errors = run_import(listing, capsys)
    assert summary == "added 0, unchanged 0, relisted 0, updated 1, rejected 0"
    assert current() == ("5.7.607", "new reason", datetime(2030, 1, 1, tzinfo=UTC), "traps")
    assert Entry.objects.count() == 1


def test_a_line_of_megabytes_is_rejected_by_its_number_without_being_read_whole(db, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    with listing.open("wb") as out:
        out.write(b"5.61.14.7\n")
        out.write(b"5" * 8_000_000 + b"\n")  # stands in for a line of gigabytes
        out.write(b"37.120.8.0/24\n")
    tracemalloc.start()
    try:
        summary, errors = run_import(listing, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary == "added 2, unchanged 0, relisted 0, updated 0, rejected 1"
    assert (
        f"line 2: '5555555555555555555555555555555555555555…' rejected: longer than {MAX_LINE} bytes"
        in errors
    )
    assert peak < 2_000_000  # the line alone is 8 MB


def test_a_line_just_within_the_limit_is_read(db, tmp_path, capsys):
    line = "5.61.14.7 # " + "x" * (MAX_LINE - len("5.61.14.7 # "))
    listing = write(tmp_path, "list.txt", f"{line}\r\n".encode())
    summary, _errors = run_import(listing, capsys)
    assert summary == "added 1, unchanged 0, relisted 0, updated 0, rejected 0"


def test_invalid_utf8_and_nul_bytes_in_a_line_are_rejected_lines(db, tmp_path, capsys):
    listing = write(
        tmp_path, "list.txt", b"5.61.14.7\n81.2.69.160 # caf\xe9\n81.2.\x0069.161\n37.120.8.0/24\n"
    )
    summary, errors = run_import(listing, capsys)
    assert summary == "added 2, unchanged 0, relisted 0, updated 0, rejected 2"
    assert "line 2: '81.2.69.160 # caf\\\\xe9' rejected: not UTF-8 text (byte 18 of the line)" in errors
    assert "line 3: '81.2.\\x0069.161' rejected: holds a NUL character" in errors


def test_text_lines_from_an_upload_get_the_same_checks(db):
    summary = blocklist_import(["\ufeff5.61.14.7\r\n", "81.2.\x0069.161\n", "5" * (MAX_LINE + 1) + "\n"])
    assert str(summary) == "added 1, unchanged 0, relisted 0, updated 0, rejected 2"
    assert [(line, why) for line, _text, why in summary.rejections] == [
        (2, "holds a NUL character"),
        (3, f"longer than {MAX_LINE} characters"),
    ]


NOT_LISTS = {
    "gzip": (gzip.compress(b"5.61.14.7\n" * 100), "gzip-compressed: decompress it first"),
    "random bytes": (random.Random(7).randbytes(20_000), "not a text list"),
    "utf-16": ("5.61.14.7\n".encode("utf-16"), "UTF-16 text: save it as UTF-8"),
    "nul in the first line": (b"5.61.14.7\x00\x00\x00\n", "not a text list"),
}


@pytest.mark.parametrize("kind", NOT_LISTS)
def test_a_file_that_is_no_list_is_a_clear_error_and_nothing_is_imported(db, tmp_path, kind):
    content, message = NOT_LISTS[kind]
    with pytest.raises(CommandError, match=message):
        call_command("import_blocklist", str(write(tmp_path, "list.txt", content)))
    assert not Entry.objects.exists()


@pytest.mark.parametrize("kind", ["gzip", "random bytes"])
def test_manage_py_exits_non_zero_without_a_traceback_on_a_binary_file(tmp_path, kind):
    path = write(tmp_path, "list.txt.gz", NOT_LISTS[kind][0])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "import_blocklist", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"CommandError: cannot import {path}: the file is" in done.stderr


def test_a_too_long_source_option_is_a_clear_error(db, tmp_path):
    listing = write(tmp_path, "list.txt", b"5.61.14.7\n")
    with pytest.raises(CommandError, match="--source is longer than 100 characters"):
        call_command("import_blocklist", str(listing), "--source", "s" * 101)
    assert not Entry.objects.exists()


def numbered_list(tmp_path: Path, count: int) -> Path:
    return write(tmp_path, "list.txt", "".join(f"81.2.69.{n}\n" for n in range(1, count + 1)).encode())


def test_a_database_failure_midway_leaves_whole_batches_only(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(importing, "BATCH", 10)
    listing = numbered_list(tmp_path, 35)
    calls = []
    real_record_many = audit.record_many

    def fail_in_the_second_batch(events):
        calls.append(len(events))
        if len(calls) == 2:  # the batch's entries are written by now: they must go too
            raise OperationalError("server closed the connection unexpectedly")
        real_record_many(events)

    monkeypatch.setattr(audit, "record_many", fail_in_the_second_batch)
    with pytest.raises(CommandError, match="stopped at line 11 by a database error"):
        call_command("import_blocklist", str(listing))
    assert capsys.readouterr().out.strip() == "added 10, unchanged 0, relisted 0, updated 0, rejected 0"
    assert Entry.objects.count() == Event.objects.count() == 10

    monkeypatch.setattr(audit, "record_many", real_record_many)
    summary, _errors = run_import(listing, capsys)
    assert summary == "added 25, unchanged 10, relisted 0, updated 0, rejected 0"


def test_a_batch_that_collides_with_another_writer_is_rolled_back_and_done_again(
    db, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(importing, "BATCH", 10)
    real_upsert = importing._upsert
    attempts = []

    def collide_once(rows, **kwargs):
        attempts.append(rows[0].line)
        counts = real_upsert(rows, **kwargs)
        if len(attempts) == 2:  # the second batch, after writing: as if another writer won the race
            raise IntegrityError(
                'duplicate key value violates unique constraint "entry_one_live_per_network"'
            )
        return counts

    monkeypatch.setattr(importing, "_upsert", collide_once)
    summary, _errors = run_import(numbered_list(tmp_path, 25), capsys)
    assert summary == "added 25, unchanged 0, relisted 0, updated 0, rejected 0"
    assert attempts == [1, 11, 11, 21]
    assert Entry.objects.count() == Event.objects.count() == 25
