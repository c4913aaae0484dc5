"""Writing the audit trail. Services call these inside their transactions."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from blocklist.models import Event

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
        _exports_changed()
    return Event.objects.create(
        action=action,
        actor=actor,
        entry=entry,
        request_id=request.pk if request is not None else request_id,
        reason=reason,
        at=at or timezone.now(),
    )


def record_entries(
    action: str, entry_ids: Iterable[int], *, actor: str, reason: str = "", at=None, request=None
) -> None:
    at = at or timezone.now()
    entry_ids = list(entry_ids)
    if entry_ids:
        _exports_changed()
    Event.objects.bulk_create(
        [
            Event(action=action, actor=actor, entry_id=pk, request=request, reason=reason, at=at)
            for pk in entry_ids
        ],
        batch_size=1000,
    )


# Changes arriving within this many seconds share one export rewrite, run at its end.
EXPORT_DEBOUNCE = 5


def _exports_changed() -> None:
    """The active set changed: have the worker rewrite EXPORT_DIR once this commits."""
    if settings.EXPORT_DIR:
        transaction.on_commit(_queue_exports_refresh)


def _queue_exports_refresh() -> None:
    from blocklist.tasks import exports_refresh

    try:
        if cache.add("blocklist:exports-refresh-queued", True, timeout=EXPORT_DEBOUNCE):
            exports_refresh.apply_async(countdown=EXPORT_DEBOUNCE)
    except Exception as e:  # noqa: BLE001  (broker or cache away: the next sweep rewrites them)
        logger.warning("could not queue an export refresh: %s", e)
