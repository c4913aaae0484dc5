"""The change stream: the active set once, then what was listed and delisted since a cursor.

The stream reads the audit trail's entry events. A cursor that were simply the last event id
could skip a row: ids are taken when a row is inserted, and a transaction holding id 10 may
commit after one holding id 11 (the import's bulk SQL inserts its events before it counts
the change under ListVersion's lock). So, on PostgreSQL, every event also records the
transaction that wrote it (`xact`, migration 0007), and a poll hands out only the events of
transactions older than the oldest one still running (`pg_snapshot_xmin`): those have all
finished, so none of them can still add a row. The cursor is a position in (xact, id) order,
and each transaction's events fall into exactly one poll's window, whatever their ids. On
SQLite writers take turns (IMMEDIATE transactions), so ids grow in commit order and the cursor
is the last id handed out.

A consequence on PostgreSQL: while a transaction that writes is open, events of transactions
that began after it wait until it ends. Writes here last milliseconds (an import batch a few
seconds), well inside a consumer's polling interval.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from json.encoder import encode_basestring_ascii as _json_str

from django.db import connection
from django.utils import timezone

from blocklist.exports import CHUNK_SIZE, export_transaction
from blocklist.formats import entry_api_json
from blocklist.models import Entry, Event

# Events per poll: a consumer that is further behind gets "more": true and asks again at once.
PAGE = 5000
CURSOR_RE = re.compile(r"^v1\.(?P<vendor>[ps])\.(?P<xact>[0-9]{1,19})\.(?P<id>[0-9]{1,19})$")
BASE64_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")  # as encode_cursor writes it: no padding
LIMIT = 2**63 - 1


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Position:
    """After the event (xact, id); xact is 0 on SQLite."""

    xact: int
    id: int


def _vendor() -> str:
    return "p" if connection.vendor == "postgresql" else "s"


def encode_cursor(position: Position) -> str:
    text = f"v1.{_vendor()}.{position.xact}.{position.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_cursor(cursor: str) -> Position:
    """The position a cursor of ours names; BadCursor for anything else."""
    refused = BadCursor("not a cursor from this portal: start again without one")
    if not BASE64_RE.match(cursor):
        raise refused
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise refused from None
    match = CURSOR_RE.match(text)
    if not match or match["vendor"] != _vendor() or int(match["xact"]) > LIMIT or int(match["id"]) > LIMIT:
        raise refused
    return Position(int(match["xact"]), int(match["id"]))


def _event_table() -> str:
    return connection.ops.quote_name(Event._meta.db_table)


def _horizon() -> Position:
    """Where a snapshot read after this starts the stream: every change before it is in it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            return Position(int(cursor.fetchone()[0]), 0)
        cursor.execute(f"SELECT max(id) FROM {_event_table()} WHERE entry_id IS NOT NULL")
        return Position(0, cursor.fetchone()[0] or 0)


SNAPSHOT_FIELDS = ("id", "network", "code", "reason", "listed_at", "expires_at", "source", "self_service")


def _entry_item(pk, network, code, reason, listed_at, expires_at, source, self_service) -> str:
    # What json.dumps(entry_api_json(entry)) writes, without building a dict per entry
    # (tests/test_changes.py holds the two to the same bytes).
    expires = f'"{expires_at.isoformat()}"' if expires_at else "null"
    return (
        f'{{"id": {pk}, "network": {_json_str(network)}, "code": {_json_str(code)}, '
        f'"reason": {_json_str(reason)}, "listed_at": "{listed_at.isoformat()}", "expires_at": {expires}, '
        f'"source": {_json_str(source)}, "self_service": {"true" if self_service else "false"}, '
        f'"delisted_at": null}}'
    )


def snapshot_chunks() -> Iterator[str]:
    """{"cursor", "listed": [every active entry], "delisted": []} as text chunks, read a chunk
    at a time (constant memory at a million entries). The cursor is taken first, so a change
    made during the read is in the snapshot or after the cursor, perhaps both (applying a
    change twice is harmless), never in neither."""
    with export_transaction():
        cursor = encode_cursor(_horizon())
        yield f'{{"cursor": "{cursor}", "listed": ['
        rows = (
            Entry.objects.active()
            .order_by("id")
            .values_list(*SNAPSHOT_FIELDS)
            .iterator(chunk_size=CHUNK_SIZE)
        )
        separator = ""
        while chunk := list(islice(rows, CHUNK_SIZE)):
            yield separator + ", ".join([_entry_item(*row) for row in chunk])
            separator = ", "
        yield '], "delisted": []}\n'


CHANGE_FIELDS = (
    "network",
    "code",
    "reason",
    "listed_at",
    "expires_at",
    "source",
    "self_service",
    "delisted_at",
)


def _events_since_postgresql(position: Position) -> tuple[Position, list[tuple]]:
    """One probe of event_change_stream_idx: the next events of finished transactions, with
    their entries as they are now, and the horizon; the horizon comes back even with no event."""
    entry_columns = ", ".join(f"e.{name}" for name in ("id", *CHANGE_FIELDS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x)
            SELECT h.x::text, ev.xact::text, ev.id, {entry_columns}
            FROM horizon h
            LEFT JOIN LATERAL (
                SELECT ev.xact, ev.id, ev.entry_id FROM {_event_table()} ev
                WHERE ev.entry_id IS NOT NULL AND (ev.xact, ev.id) > (%s::xid8, %s) AND ev.xact < h.x
                ORDER BY ev.xact, ev.id LIMIT %s
            ) ev ON true
            LEFT JOIN {connection.ops.quote_name(Entry._meta.db_table)} e ON e.id = ev.entry_id
            ORDER BY ev.xact, ev.id
            """,
            [str(position.xact), position.id, PAGE],
        )
        rows = cursor.fetchall()
    horizon = Position(int(rows[0][0]), 0)
    events = [(Position(int(xact), event_id), entry) for _h, xact, event_id, *entry in rows if event_id]
    if len(events) < PAGE:
        # The whole window was read: every transaction before the horizon has been handed out.
        return max(position, horizon), [entry for _p, entry in events]
    return events[-1][0], [entry for _p, entry in events]


def _events_since_sqlite(position: Position) -> tuple[Position, list[tuple]]:
    rows = list(
        Event.objects.filter(entry__isnull=False, id__gt=position.id)
        .order_by("id")
        .values_list("id", "entry_id", *(f"entry__{name}" for name in CHANGE_FIELDS))[:PAGE]
    )
    if not rows:
        return position, []
    return Position(0, rows[-1][0]), [row[1:] for row in rows]


def changes_since(position: Position, *, now: datetime | None = None) -> dict:
    """What was listed and delisted after the position, each entry as it is now, and the next
    cursor. One query, however many changes (up to PAGE events)."""
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        after, rows = _events_since_postgresql(position)
    else:
        after, rows = _events_since_sqlite(position)
    listed, delisted, seen = [], [], set()
    for pk, network, code, reason, listed_at, expires_at, source, self_service, delisted_at in rows:
        if pk in seen:
            continue
        seen.add(pk)
        entry = Entry(
            pk=pk,
            network=network,
            code=code,
            reason=reason,
            listed_at=listed_at,
            expires_at=expires_at,
            source=source,
            self_service=self_service,
            delisted_at=delisted_at,
        )
        if entry.is_active(now):
            listed.append(entry_api_json(entry))
        else:
            # An entry past its expiry that the sweep has not closed yet ended at its expiry.
            ended = delisted_at or expires_at
            delisted.append({"id": pk, "network": network, "delisted_at": ended.isoformat()})
    return {"cursor": encode_cursor(after), "listed": listed, "delisted": delisted, "more": len(rows) == PAGE}
