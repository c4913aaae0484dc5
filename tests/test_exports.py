"""Exports: what mail servers load, exactly, and how the files are replaced."""

from __future__ import annotations

import io
import json
import os
import stat
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from blocklist import exports
from blocklist.exports import FILE_NAMES, export_chunks, exports_refresh, exports_write_all, write_export
from blocklist.formats import delist_url, entry_json
from blocklist.services import entries_delist

PORTAL = "https://delist.example.org"  # tests/settings.py
MESSAGE = (
    "Access denied, banned sending IP [{ip}]; "
    "To request removal from this list please visit {url} and follow the directions."
)
TXT = MESSAGE.format(ip="$", url=f"{PORTAL}/?ip=$")


@pytest.fixture
def entries(listing):
    # Listed out of address order, to show the export sorts them.
    return {
        "v6": listing(
            "2a05:d018:1::/48", reason="open relay – “ünïcode”", expires_at=timezone.now() + timedelta(days=9)
        ),
        "range": listing("37.120.8.0/24", reason="snowshoe spam", code="5.7.610"),
        "single": listing("5.61.14.7", reason='spam trap "hits"'),
    }


@pytest.fixture
def gone(listing):
    """One delisted and one expired entry: neither may show up anywhere."""
    delisted = listing("81.2.69.160")
    entries_delist([delisted.pk], actor="test")
    listing("81.2.69.0/28", expires_at=timezone.now() - timedelta(seconds=1))
    listing("2a05:d018:9::/48", expires_at=timezone.now() - timedelta(days=1))


def text(fmt: str) -> str:
    return "".join(export_chunks(fmt))


@pytest.mark.parametrize("fmt", FILE_NAMES)
def test_delisted_and_expired_entries_are_left_out_of_every_format(entries, gone, fmt):
    content = text(fmt)
    assert "5.61.14.7/32" in content
    for network in ("81.2.69.160", "81.2.69.0", "2a05:d018:9::"):
        assert network not in content


def test_plain_is_one_active_network_per_line_ipv4_first(entries, gone):
    assert text("plain") == "5.61.14.7/32\n37.120.8.0/24\n2a05:d018:1::/48\n"


def test_postfix_is_a_cidr_table_with_each_entrys_code_and_the_portal_link(entries, gone):
    assert text("postfix").splitlines() == [
        "5.61.14.7/32 550 5.7.606 " + MESSAGE.format(ip="5.61.14.7", url=f"{PORTAL}/?ip=5.61.14.7"),
        "37.120.8.0/24 550 5.7.610 " + MESSAGE.format(ip="37.120.8.0", url=f"{PORTAL}/?ip=37.120.8.0"),
        "2a05:d018:1::/48 550 5.7.606 "
        + MESSAGE.format(ip="2a05:d018:1::", url=f"{PORTAL}/?ip=2a05:d018:1::"),
    ]


def test_postfix_links_are_the_ones_the_api_gives(entries):
    for line in text("postfix").splitlines():
        address = line.split("/", 1)[0]
        assert f" visit {delist_url(address)} and" in line


def test_rbldnsd_is_a_combined_dataset_with_an_ipv4_and_an_ipv6_trie(entries, gone):
    assert text("rbldnsd") == (
        "# Delist portal blocklist; serve as an rbldnsd combined dataset\n"
        "$DATASET ip4trie:ipv4 @\n"
        f":127.0.0.2:{TXT}\n"
        "5.61.14.7/32\n"
        "37.120.8.0/24\n"
        "$DATASET ip6trie:ipv6 @\n"
        f":127.0.0.2:{TXT}\n"
        "2a05:d018:1::/48\n"
    )


def test_rbldnsd_keeps_both_sections_when_a_family_has_no_entries(listing):
    listing("5.61.14.7")
    assert text("rbldnsd").endswith(f"5.61.14.7/32\n$DATASET ip6trie:ipv6 @\n:127.0.0.2:{TXT}\n")


def test_rbldnsd_escapes_a_dollar_in_the_portal_url(db, settings):
    settings.PORTAL_BASE_URL = "https://delist.example.org/$x"
    assert "visit https://delist.example.org/$$x/?ip=$ and" in text("rbldnsd")


def test_rbldnsd_splits_the_families_inside_a_chunk_and_across_chunks(listing, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK_SIZE", 2)
    for network in ["5.61.14.7", "5.61.14.8", "5.61.14.9", "2a05:d018:1::/48", "2a05:d018:2::/48"]:
        listing(network)
    networks = [line for line in text("rbldnsd").splitlines() if not line.startswith((":", "#"))]
    assert networks == [
        "$DATASET ip4trie:ipv4 @",
        "5.61.14.7/32",
        "5.61.14.8/32",
        "5.61.14.9/32",
        "$DATASET ip6trie:ipv6 @",
        "2a05:d018:1::/48",
        "2a05:d018:2::/48",
    ]


def test_json_is_an_array_of_entries_as_in_the_api(entries, gone):
    content = text("json")
    expected = [entry_json(entries[k]) for k in ("single", "range", "v6")]
    assert json.loads(content) == expected
    assert content == json.dumps(expected) + "\n"


def test_json_of_an_empty_list_is_an_empty_array(db):
    assert text("json") == "[]\n"
    assert text("plain") == text("postfix") == ""


def test_json_streams_across_chunks(listing, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK_SIZE", 2)
    for last in range(1, 6):
        listing(f"5.61.14.{last}")
    content = text("json")
    assert [e["network"] for e in json.loads(content)] == [f"5.61.14.{n}/32" for n in range(1, 6)]
    assert content == json.dumps(json.loads(content)) + "\n"


def test_an_unknown_format_is_refused(db):
    with pytest.raises(ValueError, match="unknown export format"):
        export_chunks("bind")


def test_write_export_replaces_the_target_and_leaves_no_temp_file(entries, tmp_path):
    target = tmp_path / "blocklist.txt"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    old_inode = target.stat().st_ino
    size = write_export("plain", target)
    assert target.read_text() == "5.61.14.7/32\n37.120.8.0/24\n2a05:d018:1::/48\n"
    assert size == target.stat().st_size
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # rbldnsd reads as its own user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocklist.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(entries, tmp_path, monkeypatch):
    target = tmp_path / "blocklist.txt"
    target.write_text("old\n")

    def broken():
        yield "5.61.14.7/32\n"
        raise OSError("disk full")

    monkeypatch.setitem(exports._GENERATORS, "plain", broken)
    with pytest.raises(OSError, match="disk full"):
        write_export("plain", target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["blocklist.txt"]


def test_write_export_to_dash_writes_stdout(entries, capsys):
    write_export("plain", "-")
    assert capsys.readouterr().out == "5.61.14.7/32\n37.120.8.0/24\n2a05:d018:1::/48\n"


def test_write_all_writes_every_format_under_fixed_names(entries, tmp_path):
    folder = tmp_path / "exports"
    paths = exports_write_all(folder)
    assert [p.name for p in paths] == list(FILE_NAMES.values())
    for fmt, name in FILE_NAMES.items():
        assert (folder / name).read_text() == text(fmt)
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_refresh_is_a_no_op_without_export_dir(entries, settings, tmp_path):
    settings.EXPORT_DIR = None
    assert exports_refresh() == []


def test_refresh_rewrites_the_exports_after_a_delisting(entries, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    exports_refresh()
    assert "5.61.14.7/32\n" in (tmp_path / "blocklist.txt").read_text()
    entries_delist([entries["single"].pk], actor="test")
    exports_refresh()
    assert (tmp_path / "blocklist.txt").read_text() == "37.120.8.0/24\n2a05:d018:1::/48\n"
    assert "5.61.14.7" not in (tmp_path / "blocklist.postfix.cidr").read_text()


def test_the_command_writes_a_file_atomically(entries, tmp_path):
    target = tmp_path / "blocklist.postfix.cidr"
    out = io.StringIO()
    call_command("export_blocklist", "--format", "postfix", "--output", str(target), stdout=out)
    assert target.read_text() == text("postfix")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert f"wrote postfix export to {target}" in out.getvalue()


def test_the_command_writes_stdout_for_dash(entries):
    out = io.StringIO()
    call_command("export_blocklist", "--format", "json", "--output", "-", stdout=out)
    assert out.getvalue() == text("json")


def test_the_command_refuses_an_unknown_format(db):
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("export_blocklist", "--format", "bind", "--output", "-")


def test_the_command_reports_an_unwritable_target(entries, tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        call_command("export_blocklist", "--format", "plain", "--output", str(tmp_path / "missing" / "x"))
