#!/usr/bin/env python
"""How fast and how lean `manage.py export_blocklist` is next to PostgreSQL's own COPY.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/export_benchmark.py

Creates a dedicated database (delist_bench beside the one DATABASE_URL names), migrates it,
loads --rows active entries with COPY (plus 10% delisted or expired ones the exports must skip),
then for each format runs the export command and `psql -c "COPY (SELECT ...) TO STDOUT"` of the
same rows as subprocesses, both writing a file, and reports wall time and peak RSS (GNU time,
/usr/bin/time from the Debian package "time").
For plain and postfix the COPY query produces the very same bytes, and the script checks it.
The database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import filecmp
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
PORTAL = "https://delist.example.org"
CODES = ["5.7.606", "5.7.606", "5.7.606", "5.7.610", "5.7.620"]
ACTIVE = "delisted_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
ORDER = "ORDER BY version, network_start, prefix_len"
MESSAGE_SQL = (
    "' Access denied, banned sending IP [' || split_part(network, '/', 1) || ']; "
    "To request removal from this list please visit {portal}/?ip=' || split_part(network, '/', 1) "
    "|| ' and follow the directions.'"
)
# The COPY side of each comparison: the same rows, formatted by PostgreSQL where it can.
COPY_SQL = {
    "plain": f"SELECT network FROM blocklist_entry WHERE {ACTIVE} {ORDER}",
    "rbldnsd": f"SELECT network FROM blocklist_entry WHERE {ACTIVE} {ORDER}",
    "postfix": (
        f"SELECT network || ' 550 ' || code || {MESSAGE_SQL.format(portal=PORTAL)} "
        f"FROM blocklist_entry WHERE {ACTIVE} {ORDER}"
    ),
    "json": (
        "SELECT json_build_object('network', network, 'code', code, 'reason', reason, "
        "'listed_at', listed_at, 'expires_at', expires_at) "
        f"FROM blocklist_entry WHERE {ACTIVE} {ORDER}"
    ),
}
SAME_BYTES = {"plain", "postfix"}


def v4(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def network_of(n: int) -> tuple[str, int, str, int]:
    """(network, version, network_start, prefix_len) of the nth row: 50% /32, 20% /24, 30% IPv6."""
    kind, k = n % 10, n // 10
    if kind < 5:  # single IPv4 addresses from 5.0.0.0
        value = 0x05000000 + k * 5 + kind
        return f"{v4(value)}/32", 4, f"{value:08x}", 32
    if kind < 7:  # IPv4 /24s from 37.0.0.0
        value = 0x25000000 + (k * 2 + kind - 5) * 256
        return f"{v4(value)}/24", 4, f"{value:08x}", 24
    # IPv6 /48s and /64s inside 2a05::/16
    prefix = 48 if kind == 7 else 64
    value = (0x2A05 << 112) + ((k * 3 + kind - 7) << (128 - prefix))
    return f"{ipaddress.IPv6Address(value)}/{prefix}", 6, f"{value:032x}", prefix


def network_of_large(n: int) -> tuple[str, int, str, int]:
    """The nth row of a large operator's list: 70% IPv4 /32, 20% IPv4 /24 (1 in 200 of them a /16),
    10% IPv6 /48 and /64. The lookup and submission benchmarks use it."""
    kind, k = n % 100, n // 100
    if kind < 70:  # single IPv4 addresses from 5.0.0.0
        value = 0x05000000 + k * 70 + kind
        return f"{v4(value)}/32", 4, f"{value:08x}", 32
    if kind < 90 and (kind, k % 10) != (89, 0):  # IPv4 /24s from 37.0.0.0
        value = 0x25000000 + (k * 20 + kind - 70) * 256
        return f"{v4(value)}/24", 4, f"{value:08x}", 24
    if kind < 90:  # IPv4 /16s from 50.0.0.0
        value = 0x32000000 + (k // 10) * 65536
        return f"{v4(value)}/16", 4, f"{value:08x}", 16
    # IPv6 /48s and /64s inside 2a05::/16
    prefix = 48 if kind < 95 else 64
    value = (0x2A05 << 112) + ((k * 5 + (kind - 90) % 5) << (128 - prefix))
    return f"{ipaddress.IPv6Address(value)}/{prefix}", 6, f"{value:032x}", prefix


Layout = Callable[[int], tuple[str, int, str, int]]


def write_rows(path: Path, rows: int, layout: Layout = network_of) -> None:
    """Tab-separated rows for COPY: active ones, then delisted and expired ones."""
    listed = datetime(2025, 1, 1, tzinfo=UTC)
    past = (listed + timedelta(days=30)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    inactive = rows // 10
    with path.open("w") as out:
        for n in range(rows + inactive):
            network, version, start, prefix = layout(n)
            at = (listed + timedelta(seconds=n, microseconds=n % 1000)).isoformat()
            expires, delisted, by = r"\N", r"\N", ""
            if n >= rows:  # alternately delisted and expired: present but not active
                delisted, by = (at, "bench") if n % 2 else (r"\N", "")
                expires = past if not n % 2 else r"\N"
            elif n % 7 == 0:
                expires = future
            out.write(
                f"{network}\t{version}\t{start}\t{prefix}\tlisted by the benchmark\t{CODES[n % 5]}\t"
                f"bench\t{at}\t{expires}\t{'t' if prefix in (32, 128) else 'f'}\t{delisted}\t{by}\n"
            )


# Rebuilt after the COPY, from the definition the migration gave it: filled row by row instead,
# an SP-GiST index leaves so many redirects that the VACUUM below spent over 15 minutes in
# spgvacuumcleanup on PostgreSQL 15 (docs/benchmarks.md, "Lookups").
REBUILT_INDEXES = ["entry_cidr_idx"]


def load(url: str, rows: int, folder: Path, layout: Layout = network_of) -> None:
    data = folder / "rows.tsv"
    started = time.monotonic()
    write_rows(data, rows, layout)
    with psycopg2.connect(url) as connection, connection.cursor() as cursor, data.open() as source:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)", [REBUILT_INDEXES]
        )
        rebuilt = cursor.fetchall()
        for name, _definition in rebuilt:
            cursor.execute(f"DROP INDEX {name}")
        cursor.copy_expert(
            "COPY blocklist_entry (network, version, network_start, prefix_len, reason, code, source, "
            "listed_at, expires_at, self_service, delisted_at, delisted_by) FROM STDIN",
            source,
        )
        for _name, definition in rebuilt:
            cursor.execute(definition)
    data.unlink()
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE blocklist_entry")
        cursor.execute(f"SELECT count(*) FROM blocklist_entry WHERE {ACTIVE}")
        active = cursor.fetchone()[0]
    connection.close()
    print(f"loaded {rows + rows // 10} rows ({active} active) in {time.monotonic() - started:.1f} s")


def measure(argv: list[str], env: dict, folder: Path, output: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command.

    The peak comes from GNU time, not from our own wait4: Linux charges a child the high-water
    mark of the process it was forked from, so a child of this (bigger) script would report
    this script's memory instead of its own.
    """
    report = folder / "time.txt"
    stdout = output.open("wb") if output else subprocess.DEVNULL
    started = time.monotonic()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), *argv], cwd=ROOT, env=env, stdout=stdout
    )
    wall = time.monotonic() - started
    if output:
        stdout.close()
    if result.returncode:
        sys.exit(f"{' '.join(argv)} failed with exit code {result.returncode}")
    return wall, int(report.read_text().split()[-1]) / 1024  # GNU time reports KiB


def scratch_database(name: str, *, keep: bool) -> tuple[str, psycopg2.extensions.connection, bool]:
    """(URL, admin connection, whether it was kept) of a database beside DATABASE_URL's.

    Made anew unless keep is set and it exists already.
    """
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/delist")
    parts = urlparse(base)
    admin = psycopg2.connect(urlunparse(parts._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        exists = cursor.fetchone() is not None
        if exists and not keep:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not (exists and keep):
            cursor.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parts._replace(path=f"/{name}")), admin, exists and keep


def clean_up(folder: Path, admin, name: str, *, keep: bool) -> None:
    """Remove the scratch folder, and the scratch database unless it is kept."""
    shutil.rmtree(folder, ignore_errors=True)
    if not keep:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="active entries to load")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--database", default="delist_bench", help="name of the scratch database")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it next time)")
    parser.add_argument("--formats", default="plain,postfix,rbldnsd,json")
    args = parser.parse_args()

    url, admin, kept = scratch_database(args.database, keep=args.keep)
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DATABASE_URL": url,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "benchmark-" + "x" * 40,
        "PORTAL_BASE_URL": PORTAL,
        "VAR_DIR": str(folder / "var"),
    }
    python = sys.executable
    try:
        subprocess.run(
            [python, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        if not kept:
            load(url, args.rows, folder)
        startup = [measure([python, "manage.py", "check"], env, folder) for _ in range(args.repeat)]
        print(f"Django start-up alone (manage.py check): {statistics.median(w for w, _ in startup):.2f} s\n")
        columns = [("format", 8), ("export s", 9), ("export MB", 10), ("COPY s", 7), ("COPY MB", 8)]
        header = " ".join(f"{name:>{width}}" for name, width in [*columns, ("ratio", 6), ("size MB", 8)])
        print(header)
        print("-" * len(header))
        for fmt in args.formats.split(","):
            exported, copied = folder / f"export.{fmt}", folder / f"copy.{fmt}"
            export_runs = [
                measure(
                    [python, "manage.py", "export_blocklist", "--format", fmt, "--output", str(exported)],
                    env,
                    folder,
                    output=folder / "command.log",
                )
                for _ in range(args.repeat)
            ]
            copy_runs = [
                measure(
                    ["psql", "-X", "-q", "-d", url, "-c", f"COPY ({COPY_SQL[fmt]}) TO STDOUT"],
                    env,
                    folder,
                    copied,
                )
                for _ in range(args.repeat)
            ]
            if fmt in SAME_BYTES and not filecmp.cmp(exported, copied, shallow=False):
                sys.exit(f"{fmt}: the export and the COPY of the same rows differ")
            export_s = statistics.median(w for w, _ in export_runs)
            copy_s = statistics.median(w for w, _ in copy_runs)
            print(
                f"{fmt:8} {export_s:9.2f} {max(m for _, m in export_runs):10.0f} {copy_s:7.2f} "
                f"{max(m for _, m in copy_runs):8.0f} {export_s / copy_s:6.1f} "
                f"{exported.stat().st_size / 1e6:8.1f}"
            )
            exported.unlink()
            copied.unlink()
    finally:
        clean_up(folder, admin, args.database, keep=args.keep)


if __name__ == "__main__":
    main()
