"""After a delisting: when the exports held it, and what our DNS answered when asked.

Mail servers poll the exports (or our rbldnsd) on their own schedule, so the portal can only
tell what it saw itself. Each completed request gets a Propagation row in the transaction that
completes it; the worker looks again until both questions have an answer or it gives up.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from blocklist.exports import exports_written, list_version
from blocklist.services import entries_covering
from portal_lib.dnsbl import dnsbl_lookup
from portal_lib.queueing import enqueue_after_commit
from requests_app.models import Propagation

logger = logging.getLogger(__name__)

# The first look waits for the debounced export refresh (blocklist.audit.EXPORT_DEBOUNCE).
FIRST_LOOK = timedelta(seconds=8)
RETRY_FIRST = timedelta(seconds=15)
RETRY_MAX = timedelta(minutes=10)
# Past this, nothing more is asked: the page says what was seen until then.
GIVE_UP_AFTER = timedelta(hours=6)
# Held by a worker that is checking a row, so a second one skips it.
LEASE = timedelta(seconds=60)
BATCH = 50


def dns_configured() -> bool:
    return bool(settings.DNSBL_ZONE and settings.DNSBL_RESOLVER_ADDRESS)


def _watched() -> bool:
    return bool(settings.EXPORT_DIR) or dns_configured()


def propagations_owe(request_ids: list[int], *, now: datetime) -> None:
    """One row per completed request, inside the transaction that completed them. The list's
    version read here is the one their delistings bumped (its row stays locked until commit)."""
    if not request_ids:
        return
    version = list_version()
    watch = _watched()
    first_look = now + FIRST_LOOK if watch else None
    Propagation.objects.bulk_create(
        [Propagation(request_id=pk, list_version=version, next_check_at=first_look) for pk in request_ids],
        batch_size=1000,
    )
    if watch:
        enqueue_after_commit(
            "requests_app.propagations_check_due",
            what=f"{len(request_ids)} propagation check(s)",
            countdown=FIRST_LOOK.total_seconds(),
        )


def propagations_due(*, now: datetime) -> bool:
    return Propagation.objects.filter(next_check_at__lte=now).exists()


def propagations_check_due(*, now: datetime | None = None) -> int:
    """Look at every propagation that is due, BATCH at a time; the number looked at."""
    now = now or timezone.now()
    looked = 0
    while True:
        due = list(
            Propagation.objects.filter(next_check_at__lte=now)
            .order_by("next_check_at")
            .values_list("pk", "next_check_at")[:BATCH]
        )
        claimed = [
            pk
            for pk, due_at in due
            # The claim: a second worker's UPDATE finds next_check_at moved and changes nothing.
            if Propagation.objects.filter(pk=pk, next_check_at=due_at).update(next_check_at=now + LEASE)
        ]
        if not due:
            return looked
        for pk in claimed:
            try:
                propagation_check(request_id=pk, now=now)
            except Exception:  # noqa: BLE001  (one bad row must not stop the others)
                logger.exception("propagation check of request %s failed; retrying later", pk)
                Propagation.objects.filter(pk=pk).update(next_check_at=now + RETRY_MAX)
            looked += 1


def propagation_check(*, request_id: int, now: datetime | None = None) -> Propagation:
    """Find out what can be known now, record it, and say when to look again (or not)."""
    now = now or timezone.now()
    row = Propagation.objects.select_related("request").get(pk=request_id)
    if row.exported_at is None and settings.EXPORT_DIR:
        written = exports_written()
        if written is not None and written[0] is not None and written[0] >= row.list_version:
            row.exported_at = datetime.fromtimestamp(written[1], tz=UTC)
    exports_done = row.exported_at is not None or not settings.EXPORT_DIR
    dns_done = not dns_configured()
    if dns_configured() and exports_done:
        answer = dnsbl_lookup(
            row.request.ip, zone=settings.DNSBL_ZONE, server=settings.DNSBL_RESOLVER_ADDRESS
        )
        row.dns_checked_at, row.dns_listed, row.dns_answer = now, answer.listed, answer.text
        # Still listed is final only when another entry covers the IP: then it should be.
        dns_done = answer.listed is False or (
            answer.listed is True and entries_covering(ipaddress.ip_address(row.request.ip), now=now).exists()
        )
    row.checks += 1
    completed_at = row.request.completed_at or now
    if (exports_done and dns_done) or now - completed_at >= GIVE_UP_AFTER:
        row.next_check_at = None
    else:
        row.next_check_at = now + min(RETRY_MAX, RETRY_FIRST * 2 ** min(row.checks - 1, 10))
    Propagation.objects.filter(pk=row.pk).update(
        exported_at=row.exported_at,
        dns_checked_at=row.dns_checked_at,
        dns_listed=row.dns_listed,
        dns_answer=row.dns_answer,
        checks=row.checks,
        next_check_at=row.next_check_at,
    )
    logger.info(
        "request %s propagation: exported %s, DNS %s", request_id, row.exported_at, row.dns_answer or "-"
    )
    return row
