"""Importing lists into the blocklist: plain (one IP or CIDR a line) or CSV
(network,code,reason,expires_at,source). Streams in batches with constant memory,
only adds or updates (never removes), and reports every bad line with its number.

Whatever a file holds, the answer is a rejected line with its number and why, or for a file
that is no list at all (compressed, binary, UTF-16) UnreadableList before anything is written.
Each batch is one transaction, so a failure midway leaves whole batches only.

A batch is written through the ORM (SQLite, and small batches anywhere) or, on PostgreSQL,
set-based: COPY into a temporary table, then one statement inserting the new entries, updating
the changed ones and writing an event for each. Both give the same entries, events and counts.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, OperationalError, connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from blocklist import audit
from blocklist.ip import IPNetwork, network_start, parse_network
from blocklist.models import DEFAULT_CODE, Entry, Event, code_validator
from blocklist.services import ADDED, RELISTED, UNCHANGED, entries_close_lapsed, new_entry

# Lines a batch holds, each batch one transaction. On PostgreSQL a batch is one COPY and a few
# set-based statements, so a big one is cheap; on SQLite it holds the only write lock, so it stays short.
BATCH = 50_000 if connection.vendor == "postgresql" else 1000
# Batches with fewer good rows take the ORM path on PostgreSQL too: a temporary table, whose
# catalog rows are written and vacuumed each time, is not worth it for a handful of rows.
COPY_MIN = 100
KEPT_REJECTIONS = 100  # kept for display; all are reported through on_reject
CSV_COLUMNS = ["network", "code", "reason", "expires_at", "source"]
# Longest line read, in bytes: a full CSV line (500-character reason in 4-byte characters,
# all quoted) stays under 3 KB, so anything longer is not one of ours, and is never held whole.
MAX_LINE = 4096
REASON_MAX = Entry._meta.get_field("reason").max_length
SOURCE_MAX = Entry._meta.get_field("source").max_length
# Attempts at a batch that collides with another writer (a network it lists meanwhile, a deadlock).
BATCH_ATTEMPTS = 3


@dataclass(slots=True)  # a batch holds tens of thousands
class Row:
    line: int
    network: IPNetwork
    # None: not given (a plain line, a blank CSV cell): keep what a live entry has.
    code: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    source: str | None = None


@dataclass
class ImportSummary:
    added: int = 0
    unchanged: int = 0
    relisted: int = 0
    updated: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)

    def __str__(self) -> str:
        return (
            f"added {self.added}, unchanged {self.unchanged}, relisted {self.relisted}, "
            f"updated {self.updated}, rejected {self.rejected}"
        )


class Rejected(Exception):
    """One line that cannot be imported; text is what to show of it, when not the line itself."""

    def __init__(self, why: str, *, text: str | None = None):
        super().__init__(why)
        self.text = text


class UnreadableList(Exception):
    """The file is no list at all; nothing of it was imported."""


class ImportStopped(Exception):
    """The database failed in the batch starting at `line`: the batches before it are in, nothing after."""

    def __init__(self, summary: ImportSummary, line: int, error: DatabaseError):
        super().__init__(
            f"stopped at line {line} by a database error ({error}); the lines before it are imported, "
            "nothing from it on: importing the file again finishes the job"
        )
        self.summary = summary


# --- reading --------------------------------------------------------------------------

# What the commonest files that are not lists start with, and what to tell their owner; other
# binary data fails the text check of the first line.
_NOT_TEXT = [
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"PK\x03\x04", "a zip archive: unpack it first"),
    (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
]
_UTF8_BOM = b"\xef\xbb\xbf"
# Control characters that no text list holds (tab, line and form feeds aside).
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def read_lines(stream: BinaryIO) -> Iterator[str | Rejected]:
    """The lines of a byte stream, decoded, or a Rejected for each that is too long or not UTF-8.

    Reads at most MAX_LINE + 2 bytes at a time: a line of gigabytes costs no more memory than
    one of ten, and is rejected by its number. The first line with content decides whether
    this is a text list at all (UnreadableList if not); a UTF-8 BOM before it is dropped.
    """
    number, sniffed = 0, False
    while raw := stream.readline(MAX_LINE + 2):
        number += 1
        content = raw.rstrip(b"\r\n")
        if number == 1:
            content = content.removeprefix(_UTF8_BOM)
        if not sniffed and content.strip():
            _check_text(content)
            sniffed = True
        if len(content) > MAX_LINE:
            if not raw.endswith(b"\n"):
                _skip_rest_of_line(stream)
            yield Rejected(f"longer than {MAX_LINE} bytes", text=_shown(content[:40]) + "…")
            continue
        try:
            yield content.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Rejected(f"not UTF-8 text (byte {e.start + 1} of the line)", text=_shown(content))


def _check_text(start: bytes) -> None:
    for magic, what in _NOT_TEXT:
        if start.startswith(magic):
            raise UnreadableList(f"the file is {what}")
    try:
        # Incremental, so a character cut at the end of a long line is no error.
        codecs.getincrementaldecoder("utf-8")().decode(start)
    except UnicodeDecodeError:
        binary = True
    else:
        binary = _BINARY.search(start) is not None
    if binary:
        raise UnreadableList(
            "the file is not a text list (binary data, or an encoding other than UTF-8): "
            "one IP or CIDR per line, or CSV, in UTF-8"
        )


def _skip_rest_of_line(stream: BinaryIO) -> None:
    while (chunk := stream.readline(1 << 16)) and not chunk.endswith(b"\n"):
        pass


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _checked_lines(lines: Iterable[str | Rejected]) -> Iterator[tuple[int, str | Rejected]]:
    """Numbered lines without their line ends; the ones no list holds become Rejected.

    Lines from read_lines are already bounded; text lines from elsewhere (an upload read as
    text) get the same checks here, after the fact.
    """
    for number, line in enumerate(lines, start=1):
        if isinstance(line, Rejected):
            yield number, line
            continue
        line = line.rstrip("\r\n")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if len(line) > MAX_LINE:
            yield number, Rejected(f"longer than {MAX_LINE} characters", text=line[:40] + "…")
        elif "\x00" in line:
            yield number, Rejected("holds a NUL character", text=line)
        else:
            yield number, line


# --- parsing --------------------------------------------------------------------------


def _parse_expiry(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is None:
                raise Rejected(f"expires_at {text!r} is not an ISO 8601 date or time")
            moment = datetime.combine(day, time.min)
        # In UTC now, so that a time at the edge of the calendar fails here, not in the database.
        return moment.astimezone(UTC) if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # well formed, but no such day or time (2025-02-30)
        raise Rejected(f"expires_at {text!r} is not a valid date or time") from None


def _network(text: str) -> IPNetwork:
    try:
        return parse_network(text)
    except ValidationError as e:
        raise Rejected("; ".join(e.messages)) from None


def _plain_rows(lines: Iterable[tuple[int, str | Rejected]]) -> Iterator[tuple[int, str, Row | Rejected]]:
    for number, line in lines:
        if isinstance(line, Rejected):
            yield number, line.text or "", line
            continue
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                yield number, text, Row(number, _network(text))
            except Rejected as e:
                yield number, text, e


def _csv_cells(line: str) -> list[str]:
    # One line is one entry: a quoted field never runs on into the next line (a missing
    # quote would otherwise swallow the rest of the file).
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as e:
        if str(e) == "unexpected end of data":
            raise Rejected("a quoted field is not closed on this line") from None
        raise Rejected(f"not a CSV line: {e}") from None


def _csv_row(number: int, cells: list[str]) -> Row:
    if len(cells) not in (1, len(CSV_COLUMNS)):
        raise Rejected(
            f"{len(cells)} columns; expected {len(CSV_COLUMNS)} ({','.join(CSV_COLUMNS)}), "
            "or the network alone"
        )
    network, code, reason, expires, source = (cells + [""] * len(CSV_COLUMNS))[: len(CSV_COLUMNS)]
    code, reason, source = code.strip(), reason.strip(), source.strip()
    if code:
        try:
            code_validator(code)
        except ValidationError as e:
            raise Rejected(f"code {code[:20]!r}: {e.messages[0]}") from None
    if len(reason) > REASON_MAX:
        raise Rejected(f"reason is longer than {REASON_MAX} characters")
    if len(source) > SOURCE_MAX:
        raise Rejected(f"source is longer than {SOURCE_MAX} characters")
    expires_at = _parse_expiry(expires)
    return Row(number, _network(network), code or None, reason or None, expires_at, source or None)


def _csv_rows(lines: Iterable[tuple[int, str | Rejected]]) -> Iterator[tuple[int, str, Row | Rejected]]:
    for number, line in lines:
        if isinstance(line, Rejected):
            yield number, line.text or "", line
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cells = _csv_cells(line)
            if not "".join(cells).strip():
                continue
            if number == 1 and cells[0].strip().lower() == "network":
                _check_header(cells)
                continue
            yield number, line, _csv_row(number, cells)
        except Rejected as e:
            yield number, line, e


def _check_header(cells: list[str]) -> None:
    # A header in another order would put every reason into the code column: refuse it whole.
    names = [cell.strip().lower() for cell in cells]
    if names not in (CSV_COLUMNS, CSV_COLUMNS[:1]):
        raise UnreadableList(
            f"the CSV header names the columns {','.join(names)[:200]}; "
            f"expected {','.join(CSV_COLUMNS)} (or no header)"
        )


def looks_like_csv(first_line: str) -> bool:
    return "," in first_line.split("#", 1)[0]


def detect_format(
    lines: Iterable[str | Rejected], *, name: str, fmt: str = "auto"
) -> tuple[str, Iterator[str | Rejected]]:
    """(format, the same lines): CSV when the name ends in .csv or the first line has a comma."""
    lines = iter(lines)
    if fmt != "auto":
        return fmt, lines
    first = next(lines, "")
    csv_first = isinstance(first, str) and looks_like_csv(first)
    fmt = "csv" if name.endswith(".csv") or csv_first else "plain"
    return fmt, itertools.chain([first] if first else [], lines)


# --- importing ------------------------------------------------------------------------


def import_file(
    stream: BinaryIO,
    *,
    name: str,
    fmt: str = "auto",
    source: str = "import",
    on_reject: Callable[[int, str, str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a list from a byte stream (a file opened "rb", an upload), reading it bounded.

    Raises UnreadableList for a file that is no list, ImportStopped when the database fails.
    """
    fmt, lines = detect_format(read_lines(stream), name=name, fmt=fmt)
    return blocklist_import(lines, fmt=fmt, source=source, on_reject=on_reject, on_batch=on_batch)


def blocklist_import(
    lines: Iterable[str | Rejected],
    *,
    fmt: str = "plain",
    source: str = "import",
    on_reject: Callable[[int, str, str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Add every network of the list; fmt is "plain" or "csv". Prefer import_file for files."""
    if len(source) > SOURCE_MAX:
        raise ValueError(f"source is longer than {SOURCE_MAX} characters")
    summary = ImportSummary()
    numbered = _checked_lines(lines)
    parsed = _csv_rows(numbered) if fmt == "csv" else _plain_rows(numbered)
    while batch := list(itertools.islice(parsed, BATCH)):
        rows = []
        for number, text, outcome in batch:
            if isinstance(outcome, Rejected):
                summary.rejected += 1
                if len(summary.rejections) < KEPT_REJECTIONS:
                    summary.rejections.append((number, text, str(outcome)))
                if on_reject:
                    on_reject(number, text, str(outcome))
            else:
                rows.append(outcome)
        try:
            _import_batch(rows, default_source=source, summary=summary)
        except DatabaseError as e:
            raise ImportStopped(summary, batch[0][0], e) from e
        if on_batch:
            on_batch(batch[-1][0])
    return summary


def _import_batch(rows: list[Row], *, default_source: str, summary: ImportSummary) -> None:
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                counts = _upsert(rows, default_source=default_source)
            break
        except (IntegrityError, OperationalError) as e:
            # Another writer listed one of these networks meanwhile, or the two deadlocked:
            # the batch was rolled back whole, and a new transaction sees what the other wrote.
            if attempt == BATCH_ATTEMPTS or not _is_collision(e):
                raise
    for outcome, count in counts.items():
        setattr(summary, outcome, getattr(summary, outcome) + count)


# PostgreSQL's deadlock_detected and serialization_failure: another writer went first.
_RETRYABLE = {"40P01", "40001"}


def _is_collision(error: DatabaseError) -> bool:
    return isinstance(error, IntegrityError) or getattr(error.__cause__, "sqlstate", None) in _RETRYABLE


def _upsert(rows: list[Row], *, default_source: str) -> Counter:
    """Write one batch's rows; the counts of each outcome. Runs inside the batch's transaction."""
    counts: Counter = Counter()
    by_network: dict[str, Row] = {}
    for row in rows:
        network = str(row.network)
        if network in by_network:
            counts[UNCHANGED] += 1  # a repeat within the batch changes nothing
        else:
            by_network[network] = row
    if connection.vendor == "postgresql" and len(by_network) >= COPY_MIN:
        counts.update(_upsert_copy(by_network, default_source=default_source))
    else:
        counts.update(_upsert_orm(by_network, default_source=default_source))
    return counts


def _terms(row: Row, *, default_source: str) -> dict:
    """The terms of a new entry for the row: what the row states, defaults for what it leaves blank."""
    return {
        "code": row.code or DEFAULT_CODE,
        "reason": row.reason or "",
        "source": row.source or default_source,
        "expires_at": row.expires_at,
    }


def _new_entry(row: Row, *, default_source: str, now: datetime) -> Entry:
    """The entry a row lists when no live one has its network."""
    return new_entry(row.network, listed_at=now, **_terms(row, default_source=default_source))


def _upsert_orm(by_network: dict[str, Row], *, default_source: str) -> Counter:
    counts: Counter = Counter()
    now = timezone.now()
    live = {
        e.network: e
        for e in Entry.objects.select_for_update().filter(network__in=by_network, delisted_at__isnull=True)
    }
    lapsed = [e.pk for e in live.values() if not e.is_active(now)]
    if lapsed:
        entries_close_lapsed(lapsed, now=now)
        live = {network: e for network, e in live.items() if e.pk not in lapsed}
    listed_before = set(
        Entry.objects.filter(network__in=[n for n in by_network if n not in live]).values_list(
            "network", flat=True
        )
    )

    created, changed = [], []
    for network, row in by_network.items():
        entry = live.get(network)
        if entry is None:
            created.append(_new_entry(row, default_source=default_source, now=now))
        elif _take_new_terms(entry, row):
            changed.append(entry)
        else:
            counts[UNCHANGED] += 1
    Entry.objects.bulk_create(created, batch_size=BATCH)
    Entry.objects.bulk_update(changed, UPDATABLE, batch_size=BATCH)

    events = []
    for entry in created:
        outcome = RELISTED if entry.network in listed_before else ADDED
        counts[outcome] += 1
        action = audit.Action.RELISTED if outcome == RELISTED else audit.Action.LISTED
        events.append(Event(action=action, actor=audit.IMPORT, entry=entry, reason=entry.reason, at=now))
    for entry in changed:
        counts[UPDATED] += 1
        events.append(
            Event(action=audit.Action.UPDATED, actor=audit.IMPORT, entry=entry, reason=entry.reason, at=now)
        )
    audit.record_many(events)
    return counts


UPDATED = "updated"
UPDATABLE = ["code", "reason", "expires_at", "source"]


def _take_new_terms(entry: Entry, row: Row) -> bool:
    """Copy what a CSV row states onto a live entry (a blank cell states nothing); True if it changed."""
    stated = {name: getattr(row, name) for name in UPDATABLE if getattr(row, name) is not None}
    new = {name: value for name, value in stated.items() if getattr(entry, name) != value}
    for name, value in new.items():
        setattr(entry, name, value)
    return bool(new)


# --- the set-based path (PostgreSQL) --------------------------------------------------

STAGING = "blocklist_import_staging"
CLASSIFIED = "blocklist_import_classified"
# Rows handed to COPY per read: about 100 KB of text, few calls, little held at once.
COPY_ROWS_PER_READ = 1000


def _entry_fields() -> list[models.Field]:
    # What an insert writes: every column of the model but the id and those the database computes.
    return [f for f in Entry._meta.concrete_fields if not f.primary_key and not f.generated]


def _staging_columns() -> list[tuple[str, str, bool]]:
    """(column, type, whether NULL) of the staging table: a new entry's columns, then the terms
    the row states (NULL where it states none, so that a live entry keeps its own)."""
    entry = [(f.column, f.db_type(connection), f.null) for f in _entry_fields()]
    stated = [(f"stated_{name}", Entry._meta.get_field(name).db_type(connection), True) for name in UPDATABLE]
    return entry + stated


def _plain_value(field: models.Field) -> bool:
    # Values COPY's CSV reads as they are written by str(): text, numbers, booleans, timestamps.
    return type(field) in (models.CharField, models.TextField, models.BooleanField, models.DateTimeField) or (
        isinstance(field, models.IntegerField) and not field.is_relation
    )


def _staging_rows(rows: list[Row], *, default_source: str, now: datetime) -> Iterator[list]:
    """One staging row per row: the entry it would list (as _new_entry builds it), then its terms.

    Building a model instance per row would cost more than parsing the line. So only the columns
    that differ from row to row are made here, those new_entry derives from the network and the
    row's terms; every other column takes the value (its default) of one entry built per batch.
    tests/test_import_postgres.py holds these rows to what new_entry builds.
    """
    fields = _entry_fields()
    names = [f.attname for f in fields]
    template = vars(_new_entry(rows[0], default_source=default_source, now=now))
    base = [template[name] for name in names]
    position = {name: i for i, name in enumerate(names)}
    # Anything but text, numbers, booleans and times the way the backend prepares it.
    prepared = [(i, f) for i, f in enumerate(fields) if not _plain_value(f)]
    for row in rows:
        network = row.network
        cells = base.copy()
        cells[position["network"]] = str(network)
        cells[position["version"]] = network.version
        cells[position["network_start"]] = network_start(network)
        cells[position["prefix_len"]] = network.prefixlen
        for name, value in _terms(row, default_source=default_source).items():
            cells[position[name]] = value
        for i, other in prepared:
            cells[i] = other.get_db_prep_save(cells[i], connection)
        cells += [row.code, row.reason, row.expires_at, row.source]
        yield cells


class _CopySource:
    """The file-like object copy_expert reads: CSV made on demand, a thousand rows at a time.

    CSV, because the csv module writes it in C, quoting what needs quoting; None becomes an
    empty cell, which COPY reads as NULL (FORCE_NOT_NULL keeps '' for the columns that are
    never NULL, as an empty reason is).
    """

    def __init__(self, rows: Iterator[list]):
        self.rows = rows
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def read(self, size: int = -1) -> str:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerows(itertools.islice(self.rows, COPY_ROWS_PER_READ))
        return self.buffer.getvalue()


def _upsert_copy(by_network: dict[str, Row], *, default_source: str) -> Counter:
    """The ORM path's outcome in a handful of statements, whatever the batch's size.

    The rows are copied into a temporary table, and classified into another: one probe of the
    coverage index per row finds every entry its network ever had, so the live one (and whether
    it expired, or the row changes its terms) and whether there were others. The live entries
    the batch changes are then locked, as the ORM path's select_for_update does; the service
    that closes expired ones closes those. A last statement inserts an entry for every network
    without a live one, updates the changed terms and writes an event for each of these.

    The probe is a LATERAL aggregate, which the planner runs once per row: as a join it would
    plan a hash over every entry, a cost growing with the list rather than the batch.
    """
    now = timezone.now()
    entry, event = (connection.ops.quote_name(m._meta.db_table) for m in (Entry, Event))
    columns = _staging_columns()
    names = ", ".join(name for name, _type, _null in columns)
    not_null = ", ".join(name for name, _type, null in columns if not null)
    inserted = ", ".join(f.column for f in _entry_fields())
    differs = " OR ".join(
        f"(s.stated_{name} IS NOT NULL AND s.stated_{name} IS DISTINCT FROM e.{name})" for name in UPDATABLE
    )
    terms = ", ".join(f"{name} = COALESCE(s.stated_{name}, e.{name})" for name in UPDATABLE)
    action = audit.Action
    counts: Counter = Counter()
    with connection.cursor() as cursor:
        # ON COMMIT DROP cleans up after a failure; the DROP below, after a batch inside an
        # outer transaction (a savepoint commits nothing).
        cursor.execute(
            f"CREATE TEMPORARY TABLE {STAGING} ({', '.join(f'{n} {t}' for n, t, _null in columns)}) "
            "ON COMMIT DROP"
        )
        source = _CopySource(_staging_rows(list(by_network.values()), default_source=default_source, now=now))
        with connection.wrap_database_errors:  # psycopg2's own method: Django does not wrap its errors
            cursor.copy_expert(
                f"COPY {STAGING} ({names}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({not_null}))", source
            )
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {CLASSIFIED} ON COMMIT DROP AS
            SELECT s.*, g.* FROM {STAGING} s CROSS JOIN LATERAL (
                SELECT max(e.id) FILTER (WHERE e.delisted_at IS NULL) AS live_id,
                    count(*) > 0 AS listed_before,
                    coalesce(bool_or(e.expires_at <= %(now)s) FILTER (WHERE e.delisted_at IS NULL), false)
                        AS expired,
                    coalesce(bool_or({differs}) FILTER (WHERE e.delisted_at IS NULL), false) AS changes
                FROM {entry} e WHERE e.network_start = s.network_start AND e.prefix_len = s.prefix_len
                AND e.network = s.network
            ) g
            """,
            {"now": now},
        )
        cursor.execute(f"SELECT live_id, expired FROM {CLASSIFIED} WHERE expired OR changes")
        flagged = dict(cursor.fetchall())
        if flagged:
            cursor.execute(
                f"SELECT id FROM {entry} WHERE id = ANY(%s) AND delisted_at IS NULL ORDER BY id FOR UPDATE",
                [list(flagged)],
            )
            if cursor.rowcount < len(flagged):
                # Delisted since it was classified: classify the batch again, as after a collision.
                raise IntegrityError("an entry this batch changes was delisted meanwhile")
        lapsed = [pk for pk, expired in flagged.items() if expired]
        if lapsed:
            entries_close_lapsed(lapsed, now=now)
        cursor.execute(
            f"""
            WITH updated AS (
                UPDATE {entry} e SET {terms} FROM {CLASSIFIED} s
                WHERE e.id = ANY(%(changing)s) AND e.id = s.live_id AND ({differs})
                RETURNING e.id, e.reason
            ), inserted AS (
                INSERT INTO {entry} ({inserted})
                SELECT {inserted} FROM {CLASSIFIED} WHERE live_id IS NULL OR expired
                RETURNING id, network, reason
            ), written AS (
                INSERT INTO {event} (at, action, actor, reason, entry_id)
                SELECT %(now)s, CASE WHEN c.listed_before THEN %(relisted)s ELSE %(listed)s END,
                    %(actor)s, i.reason, i.id
                FROM inserted i JOIN {CLASSIFIED} c ON c.network = i.network
                UNION ALL
                SELECT %(now)s, %(updated)s, %(actor)s, u.reason, u.id FROM updated u
                RETURNING action
            )
            SELECT action, count(*) FROM written GROUP BY action
            """,
            {
                "now": now,
                "changing": [pk for pk, expired in flagged.items() if not expired],
                "listed": action.LISTED,
                "relisted": action.RELISTED,
                "updated": action.UPDATED,
                "actor": audit.IMPORT,
            },
        )
        outcomes = {action.LISTED: ADDED, action.RELISTED: RELISTED, action.UPDATED: UPDATED}
        for name, count in cursor.fetchall():
            counts[outcomes[name]] += count
        cursor.execute(f"DROP TABLE {STAGING}, {CLASSIFIED}")
    changed = counts.total()
    counts[UNCHANGED] += len(by_network) - changed
    if changed:
        audit.active_set_changed()
    return counts
