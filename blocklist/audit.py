"""Writing the audit trail. Services call these inside their transactions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from blocklist.models import Event

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
    Event.objects.bulk_create(
        [
            Event(action=action, actor=actor, entry_id=pk, request=request, reason=reason, at=at)
            for pk in entry_ids
        ],
        batch_size=1000,
    )
