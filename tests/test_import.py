"""import_blocklist: plain or CSV, streamed, idempotent, every bad line reported with its number."""

import random
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from blocklist.models import Entry, Event
from blocklist.services import entries_delist


def run_import(path, capsys, *args):
    call_command("import_blocklist", str(path), *args)
    out = capsys.readouterr()
    return out.out.strip(), out.err


def test_a_plain_list_is_added_once_and_bad_lines_are_reported(db, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# our list\n5.61.14.7\n\n37.120.8.0/24  # snowshoe\n10.0.0.1\n5.61.14.07\n2a05:d018:1::/48\n"
    )
    summary, errors = run_import(listing, capsys)
    assert summary == "added 3, unchanged 0, relisted 0, updated 0, rejected 2"
    assert "line 5: '10.0.0.1' rejected: 10.0.0.1 is not a public address" in errors
    assert "line 6: '5.61.14.07' rejected:" in errors
    assert Event.objects.filter(action="listed", actor="import").count() == 3

    summary, _errors = run_import(listing, capsys)
    assert summary == "added 0, unchanged 3, relisted 0, updated 0, rejected 2"
    assert Entry.objects.count() == 3


def test_csv_sets_terms_updates_them_and_relists_what_was_delisted(db, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text(
        "network,code,reason,expires_at,source\n"
        "5.61.14.7,5.7.607,spam trap,2030-01-01,traps\n"
        "37.120.8.0/24,,snowshoe,,\n"
        "81.2.69.160,5.7.700,bad code,,\n"
        "81.2.69.161,,,tomorrow,\n"
    )
    summary, errors = run_import(listing, capsys, "--source", "feed")
    assert summary == "added 2, unchanged 0, relisted 0, updated 0, rejected 2"
    assert "line 4:" in errors and "5.7.606 to 5.7.649" in errors
    assert "line 5:" in errors and "expires_at 'tomorrow'" in errors
    single = Entry.objects.get(network="5.61.14.7/32")
    assert (single.code, single.reason, single.source) == ("5.7.607", "spam trap", "traps")
    assert single.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert Entry.objects.get(network="37.120.8.0/24").source == "feed"

    listing.write_text("5.61.14.7,5.7.608,spam trap again,,traps\n37.120.8.0/24,,snowshoe,,feed\n")
    entries_delist([Entry.objects.get(network="37.120.8.0/24").pk], actor="admin")
    summary, _errors = run_import(listing, capsys)
    assert summary == "added 0, unchanged 0, relisted 1, updated 1, rejected 0"
    assert Entry.objects.get(network="5.61.14.7/32").code == "5.7.608"
    assert Entry.objects.filter(network="37.120.8.0/24").count() == 2  # history kept, new live entry
    assert Event.objects.filter(action="relisted").count() == 1


def test_a_generated_file_of_100k_lines_is_summarised_exactly(db, tmp_path, capsys):
    rng = random.Random(7)
    good, bad, expected_bad = set(), 0, []
    lines = []
    for number in range(1, 100_001):
        kind = rng.random()
        if kind < 0.05:
            lines.append(f"10.{rng.randrange(256)}.{rng.randrange(256)}.1")  # private
            expected_bad.append(number)
        elif kind < 0.08:
            lines.append(f"{rng.randrange(1, 99)}.0.0.{rng.randrange(1, 256)}/24")  # host bits set
            expected_bad.append(number)
        elif kind < 0.10:
            lines.append("# a comment")
        else:
            network = (
                f"{rng.randrange(11, 99)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            lines.append(network)
            good.add(network)
    listing = tmp_path / "big.txt"
    listing.write_text("\n".join(lines) + "\n")
    bad = len(expected_bad)
    repeats = 100_000 - len(expected_bad) - lines.count("# a comment") - len(good)

    summary, errors = run_import(listing, capsys)
    assert summary == f"added {len(good)}, unchanged {repeats}, relisted 0, updated 0, rejected {bad}"
    reported = [int(line.split(":")[0].removeprefix("line ")) for line in errors.splitlines()]
    assert reported == expected_bad
    assert Entry.objects.count() == len(good)

    summary, _errors = run_import(listing, capsys)
    assert summary == f"added 0, unchanged {len(good) + repeats}, relisted 0, updated 0, rejected {bad}"


def test_an_unreadable_file_is_a_clear_error(db, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_blocklist", str(tmp_path / "missing.txt"))
