"""Writing the audit trail. Services call these inside their transactions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from blocklist.models import Event, ListVersion
from portal_lib.queueing import enqueue

logger = logging.getLogger(__name__)

Action = Event.Action

# Actors that are not people.
SENDER = "sender"
WORKER = "worker"
IMPORT = "import"
SELF_SERVICE = "self-service"


def record(
    action: str,
    *,
    actor: str,
    entry=None,
    request=None,
    request_id: int | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> Event:
    if entry is not None:
        _active_set_changed()
    return Event.objects.create(
        action=action,
        actor=actor,
        entry=entry,
        request_id=request.pk if request is not None else request_id,
        reason=reason,
        at=at or timezone.now(),
    )


def event(action: str, *, actor: str, at: datetime, reason: str = "") -> Event:
    """An event about a request, not yet written: for a writer that inserts its rows itself in
    one statement (requests_app.submission_sql), where record() would be a round trip of its own."""
    return Event(action=action, actor=actor, reason=reason, at=at)


def record_entries(
    action: str, entry_ids: Iterable[int], *, actor: str, reason: str = "", at=None, request=None
) -> None:
    at = at or timezone.now()
    entry_ids = list(entry_ids)
    if entry_ids:
        _active_set_changed()
    Event.objects.bulk_create(
        [
            Event(action=action, actor=actor, entry_id=pk, request=request, reason=reason, at=at)
            for pk in entry_ids
        ],
        batch_size=1000,
    )


def record_entries_by_request(
    action: str, by_request: Mapping[int, int], *, actor: str, at: datetime
) -> None:
    """One event per entry, each naming its own request (entry id -> request id): the sweep's batches."""
    record_many(
        [
            Event(action=action, actor=actor, entry_id=pk, request_id=rid, at=at)
            for pk, rid in by_request.items()
        ]
    )


def record_requests(action: str, request_ids: Iterable[int], *, actor: str, at: datetime) -> None:
    """One event per request, in one statement: the batch form of record(request_id=...)."""
    Event.objects.bulk_create(
        [Event(action=action, actor=actor, request_id=pk, at=at) for pk in request_ids], batch_size=1000
    )


def record_many(events: list[Event]) -> None:
    """Write events built by the caller (an import's batch, each with its own action and reason)."""
    if any(event.entry_id is not None for event in events):
        _active_set_changed()
    Event.objects.bulk_create(events, batch_size=1000)


def active_set_changed() -> None:
    """Count a change to the active set whose events the caller wrote in bulk SQL itself (the
    import's set-based path): once per transaction covers all its changes."""
    _active_set_changed()


# Changes arriving within this many seconds share one export rewrite, run at its end.
EXPORT_DEBOUNCE = 5


def _active_set_changed() -> None:
    """Count the change in ListVersion, and have the worker rewrite EXPORT_DIR once this commits.

    The UPDATE locks the one row until this transaction ends, so a second change waits for
    the first to commit: the exports compare versions, and a version seen means every change
    up to it is visible (see ListVersion). The upsert creates the row on first use.
    """
    table = connection.ops.quote_name(ListVersion._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, version) VALUES (1, 1) "
            f"ON CONFLICT (id) DO UPDATE SET version = {table}.version + 1"
        )
    if settings.EXPORT_DIR:
        transaction.on_commit(_queue_exports_refresh)


def _queue_exports_refresh() -> None:
    try:
        first = cache.add("blocklist:exports-refresh-queued", True, timeout=EXPORT_DEBOUNCE)
    except Exception as e:  # noqa: BLE001  (cache away: the next sweep rewrites them)
        logger.warning("could not debounce an export refresh (%s); the next sweep rewrites them", e)
        return
    if first:
        enqueue("blocklist.exports_refresh", what="an export refresh", countdown=EXPORT_DEBOUNCE)
