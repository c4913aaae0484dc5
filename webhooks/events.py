"""Events for the webhooks, written by the services inside their own transactions.

A service calls one function here per change; without an active endpoint that wants the event
type, that costs one query on the (tiny) endpoint table and writes nothing. Otherwise the events
and their deliveries are written in two statements, whatever the size of the batch, and the
worker is woken once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from django.utils import timezone

from blocklist.formats import entry_json
from blocklist.models import Entry
from portal_lib.queueing import enqueue_after_commit
from webhooks.models import Delivery, Endpoint, Event, EventType


def subscribers(type: str) -> list[int]:
    """The active endpoints that want events of this type.

    Read in the caller's transaction: an endpoint saved before the change commits gets its event,
    which a per-process cache could not promise.
    """
    return [
        pk
        for pk, events in Endpoint.objects.filter(active=True).values_list("pk", "events")
        if type in events
    ]


def emit_many(type: str, build: Callable[[], list[dict]], *, at: datetime | None = None) -> int:
    """One event of `type` for each dict `build` returns (called only when someone subscribes),
    and one delivery of each to every subscribed endpoint; the number of events."""
    endpoints = subscribers(type)
    if not endpoints:
        return 0
    items = build()
    if not items:
        return 0
    now = timezone.now()
    events = Event.objects.bulk_create(
        [Event(type=type, at=at or now, data=data) for data in items], batch_size=1000
    )
    Delivery.objects.bulk_create(
        [
            Delivery(event=event, endpoint_id=pk, created_at=now, due_at=now)
            for event in events
            for pk in endpoints
        ],
        batch_size=1000,
    )
    enqueue_after_commit("webhooks.deliveries_send_due", what=f"{len(events)} {type} webhook event(s)")
    return len(events)


def emit(type: str, data: dict, *, at: datetime | None = None) -> int:
    return emit_many(type, lambda: [data], at=at)


# --- what each service reports ----------------------------------------------------


def entry_listed(entry: Entry) -> None:
    """entry.listed: the entry as the API shows it, with its id."""
    emit(EventType.ENTRY_LISTED, {"id": entry.pk, **entry_json(entry)}, at=entry.listed_at)


def entries_delisted(entry_ids: Iterable[int], *, at: datetime) -> None:
    """entry.delisted for each entry, as the change stream shows it: id, network, delisted_at."""
    ids = list(entry_ids)
    if not ids:
        return

    def build() -> list[dict]:
        rows = Entry.objects.filter(pk__in=ids).order_by("pk").values_list("pk", "network")
        return [{"id": pk, "network": network, "delisted_at": at.isoformat()} for pk, network in rows]

    emit_many(EventType.ENTRY_DELISTED, build, at=at)


def requests_completed(request_ids: Iterable[int], *, at: datetime) -> None:
    """request.completed for each request: its IP and the networks it covered (no email)."""
    ids = list(request_ids)
    if not ids:
        return

    def build() -> list[dict]:
        from requests_app.models import DelistRequest

        networks: dict[int, list[str]] = {pk: [] for pk in ids}
        covered = DelistRequest.entries.through.objects.filter(delistrequest_id__in=ids)
        for request_id, network in covered.order_by("entry_id").values_list(
            "delistrequest_id", "entry__network"
        ):
            networks[request_id].append(network)
        return [
            {"id": pk, "ip": ip, "completed_at": at.isoformat(), "networks": networks[pk]}
            for pk, ip in DelistRequest.objects.filter(pk__in=ids).order_by("pk").values_list("pk", "ip")
        ]

    emit_many(EventType.REQUEST_COMPLETED, build, at=at)


def request_needs_review(request, *, reason: str) -> None:
    """request.needs_review: the request's IP, why a reviewer must decide, what covers it."""

    def build() -> list[dict]:
        networks = list(request.entries.order_by("pk").values_list("network", flat=True))
        confirmed_at = request.confirmed_at.isoformat() if request.confirmed_at else None
        return [
            {
                "id": request.pk,
                "ip": request.ip,
                "confirmed_at": confirmed_at,
                "reason": reason,
                "networks": networks,
            }
        ]

    emit_many(EventType.REQUEST_NEEDS_REVIEW, build, at=request.confirmed_at)
