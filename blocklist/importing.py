"""Importing lists into the blocklist: plain (one IP or CIDR a line) or CSV
(network,code,reason,expires_at,source). Streams in batches with constant memory,
only adds or updates (never removes), and reports every bad line with its number."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from blocklist import audit
from blocklist.ip import IPNetwork, parse_network
from blocklist.models import DEFAULT_CODE, Entry, Event, code_validator
from blocklist.services import ADDED, RELISTED, UNCHANGED, entries_close_lapsed, entry_list, new_entry

BATCH = 1000
KEPT_REJECTIONS = 100  # kept for display; all are reported through on_reject
CSV_COLUMNS = ["network", "code", "reason", "expires_at", "source"]


@dataclass
class Row:
    line: int
    network: IPNetwork
    code: str | None = None  # None: not given, keep what a live entry has
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
    pass


def _parse_expiry(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise Rejected(f"expires_at {text!r} is not an ISO 8601 date or time")
        moment = datetime.combine(day, time.min)
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _network(text: str) -> IPNetwork:
    try:
        return parse_network(text)
    except ValidationError as e:
        raise Rejected("; ".join(e.messages)) from None


def _plain_rows(lines: Iterable[str]) -> Iterator[tuple[int, str, Row | Rejected]]:
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if text:
            try:
                yield number, text, Row(number, _network(text))
            except Rejected as e:
                yield number, text, e


def _csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, str, Row | Rejected]]:
    reader = csv.reader(lines)
    for cells in reader:
        number = reader.line_num
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        text = ",".join(cells)
        if number == 1 and cells[0].strip().lower() == "network":
            continue  # the header
        try:
            if len(cells) > len(CSV_COLUMNS):
                raise Rejected(
                    f"{len(cells)} columns; expected at most {len(CSV_COLUMNS)}: {','.join(CSV_COLUMNS)}"
                )
            network, code, reason, expires, source = (cells + [""] * 5)[:5]
            code = code.strip() or DEFAULT_CODE
            try:
                code_validator(code)
            except ValidationError as e:
                raise Rejected(f"code {code!r}: {e.messages[0]}") from None
            if len(reason) > 500:
                raise Rejected("reason is longer than 500 characters")
            row = Row(number, _network(network), code, reason.strip(), _parse_expiry(expires), source.strip())
            yield number, text, row
        except Rejected as e:
            yield number, text, e


def looks_like_csv(first_line: str) -> bool:
    return "," in first_line.split("#", 1)[0]


def detect_format(lines: Iterable[str], *, name: str, fmt: str = "auto") -> tuple[str, Iterator[str]]:
    """(format, the same lines): CSV when the name ends in .csv or the first line has a comma."""
    lines = iter(lines)
    if fmt != "auto":
        return fmt, lines
    first = next(lines, "")
    fmt = "csv" if name.endswith(".csv") or looks_like_csv(first) else "plain"
    return fmt, itertools.chain([first] if first else [], lines)


def blocklist_import(
    lines: Iterable[str],
    *,
    fmt: str = "plain",
    source: str = "import",
    on_reject: Callable[[int, str, str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Add every network of the list; fmt is "plain" or "csv"."""
    summary = ImportSummary()
    parsed = _csv_rows(lines) if fmt == "csv" else _plain_rows(lines)
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
        _import_batch(rows, default_source=source, summary=summary)
        if on_batch:
            on_batch(batch[-1][0])
    return summary


def _import_batch(rows: list[Row], *, default_source: str, summary: ImportSummary) -> None:
    try:
        with transaction.atomic():
            counts = _upsert(rows, default_source=default_source)
    except IntegrityError:
        # Another writer listed one of these networks meanwhile: go row by row.
        counts = Counter()
        for row in rows:
            _entry, outcome = entry_list(
                row.network,
                actor=audit.IMPORT,
                reason=row.reason or "",
                code=row.code or DEFAULT_CODE,
                source=row.source or default_source,
                expires_at=row.expires_at,
            )
            counts[outcome] += 1
    for outcome, count in counts.items():
        setattr(summary, outcome, getattr(summary, outcome) + count)


def _upsert(rows: list[Row], *, default_source: str) -> Counter:
    counts: Counter = Counter()
    now = timezone.now()
    by_network: dict[str, Row] = {}
    for row in rows:
        if str(row.network) in by_network:
            counts[UNCHANGED] += 1  # a repeat within the batch changes nothing
        else:
            by_network[str(row.network)] = row

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
            created.append(
                new_entry(
                    row.network,
                    code=row.code or DEFAULT_CODE,
                    reason=row.reason or "",
                    source=row.source or default_source,
                    expires_at=row.expires_at,
                    listed_at=now,
                )
            )
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
    Event.objects.bulk_create(events, batch_size=BATCH)
    return counts


UPDATED = "updated"
UPDATABLE = ["code", "reason", "expires_at", "source"]


def _take_new_terms(entry: Entry, row: Row) -> bool:
    """Copy what a CSV row states onto a live entry; True if anything changed."""
    if row.code is None:  # a plain line states nothing beyond the network
        return False
    new = {
        "code": row.code,
        "reason": row.reason,
        "expires_at": row.expires_at,
        "source": row.source or entry.source,
    }
    if all(getattr(entry, name) == value for name, value in new.items()):
        return False
    for name, value in new.items():
        setattr(entry, name, value)
    return True
