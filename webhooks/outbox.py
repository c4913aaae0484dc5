"""The webhook outbox: deliveries written with the change they report (webhooks/events.py) and
sent by the worker until the receiver answers 2xx or the delivery is given up.

Like the mail outbox (requests_app/outbox.py): claimed in batches, oldest due first, with
FOR UPDATE SKIP LOCKED on PostgreSQL so two senders take different deliveries; a claim is a
lease, so a sender that dies hands its deliveries back when the lease runs out; failures back
off 30 s, 1, 2, 4 ... minutes, at most hourly, until GIVE_UP has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from portal_lib.queueing import enqueue_after_commit
from webhooks import http
from webhooks.models import GIVE_UP, Delivery, Endpoint
from webhooks.targets import TargetRefused, resolve

logger = logging.getLogger(__name__)

# Longer than a batch can take to send (BATCH attempts of a few seconds each, within the budget).
LEASE = timedelta(seconds=90)
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
BATCH = 50
PENDING = Delivery.Status.PENDING


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """X-Delist-Signature: HMAC-SHA256 of "<timestamp>.<body>" under the endpoint's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backlog() -> int:
    """Deliveries still owed (for health and metrics)."""
    return Delivery.objects.filter(status=PENDING).count()


def deliveries_send_due(*, now: datetime | None = None, budget: float | None = None) -> int:
    """Send due deliveries, BATCH claimed at a time, until none is left or `budget` seconds are
    spent; the number delivered."""
    now = now or timezone.now()
    budget = settings.DELIST_SWEEP_INTERVAL if budget is None else budget
    deadline = time.monotonic() + budget
    delivered = 0
    while time.monotonic() < deadline:
        batch = _claim_due(now=now, lease=LEASE + timedelta(seconds=budget))
        if not batch:
            break
        delivered += _deliver_batch(batch, now=now, deadline=deadline)
    return delivered


def _claim_due(*, now: datetime, lease: timedelta) -> list[int]:
    """Hold up to BATCH due deliveries to active endpoints for `lease` (one more attempt each)."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    endpoints = connection.ops.quote_name(Endpoint._meta.db_table)
    if connection.vendor == "postgresql":
        # SKIP LOCKED: a second sender takes the next deliveries instead of waiting for these.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET due_at = %s, leased_until = %s, attempts = attempts + 1, "
                "last_attempt_at = %s "
                f"WHERE id IN (SELECT d.id FROM {table} d JOIN {endpoints} e ON e.id = d.endpoint_id "
                "WHERE d.status = %s AND d.due_at <= %s AND d.give_up_at > %s AND e.active "
                "ORDER BY d.due_at FOR UPDATE OF d SKIP LOCKED LIMIT %s) RETURNING id",
                [now + lease, now + lease, now, PENDING, now, now, BATCH],
            )
            return [pk for (pk,) in cursor.fetchall()]
    # SQLite: the IMMEDIATE transaction holds the database's only write lock.
    with transaction.atomic():
        due = Delivery.objects.filter(
            status=PENDING, due_at__lte=now, give_up_at__gt=now, endpoint__active=True
        )
        ids = list(due.order_by("due_at").values_list("pk", flat=True)[:BATCH])
        Delivery.objects.filter(pk__in=ids).update(
            due_at=now + lease, leased_until=now + lease, attempts=F("attempts") + 1, last_attempt_at=now
        )
    return ids


def _deliver_batch(ids: list[int], *, now: datetime, deadline: float) -> int:
    """Each claimed delivery in turn, its outcome recorded on its own; the number delivered."""
    deliveries = list(
        Delivery.objects.select_related("event", "endpoint").filter(pk__in=ids).order_by("due_at", "pk")
    )
    # Endpoints that could not be reached in this batch: the rest of theirs would fail the same
    # way, each after another time-out.
    unreachable: dict[int, str] = {}
    delivered = failed = 0
    for n, delivery in enumerate(deliveries):
        if time.monotonic() >= deadline:
            untried = [d.pk for d in deliveries[n:]]
            Delivery.objects.filter(pk__in=untried).update(
                due_at=now, leased_until=None, attempts=F("attempts") - 1
            )
            logger.info(
                "webhook sender stopped at its budget; %d delivery(ies) wait for the next", len(untried)
            )
            break
        if delivery.endpoint_id in unreachable:
            _failed(delivery, unreachable[delivery.endpoint_id], now=now)
            failed += 1
            continue
        try:
            code = _post(delivery)
        except TargetRefused as e:
            unreachable[delivery.endpoint_id] = f"refused: {e}"
            _failed(delivery, unreachable[delivery.endpoint_id], now=now)
            failed += 1
            continue
        except Exception as e:  # noqa: BLE001  (network and protocol errors alike: back off, retry)
            unreachable[delivery.endpoint_id] = f"{type(e).__name__}: {e}"
            _failed(delivery, unreachable[delivery.endpoint_id], now=now)
            failed += 1
            continue
        if 200 <= code < 300:
            _delivered(delivery, code)
            delivered += 1
        else:
            what = "a redirect, not followed" if 300 <= code < 400 else "not a 2xx answer"
            _failed(delivery, f"HTTP {code}: {what}", now=now, code=code)
            failed += 1
    if delivered or failed:
        logger.info("%d webhook delivery(ies) made, %d failed", delivered, failed)
    return delivered


def _post(delivery: Delivery) -> int:
    """One attempt; the receiver's status code. The URL is checked again: it may have been saved
    before WEBHOOK_ALLOW_PRIVATE changed, or its host may resolve elsewhere now."""
    target = resolve(delivery.endpoint.url)
    body = json.dumps(delivery.event.payload(), separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Delist-Timestamp": timestamp,
        "X-Delist-Signature": signature(delivery.endpoint.secret, timestamp, body),
    }
    return http.post(target, body, headers)


def _delivered(delivery: Delivery, code: int) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=PENDING).update(
        status=Delivery.Status.DELIVERED,
        delivered_at=timezone.now(),
        leased_until=None,
        last_status_code=code,
        last_error="",
    )


def _failed(delivery: Delivery, error: str, *, now: datetime, code: int | None = None) -> None:
    retry_at = now + min(RETRY_MAX, RETRY_FIRST * 2 ** min(delivery.attempts - 1, 16))
    fields = {"last_status_code": code, "last_error": error[:2000], "due_at": retry_at, "leased_until": None}
    if retry_at >= delivery.give_up_at:
        fields.update(status=Delivery.Status.FAILED, failed_at=now)
        logger.error("webhook delivery %s to %s given up: %s", delivery.pk, delivery.endpoint, error)
    else:
        logger.warning(
            "webhook delivery %s to %s failed: %s; retrying at %s",
            delivery.pk,
            delivery.endpoint,
            error,
            retry_at,
        )
    Delivery.objects.filter(pk=delivery.pk, status=PENDING).update(**fields)


def deliveries_give_up(*, now: datetime | None = None) -> int:
    """Mark deliveries past their give_up_at failed (those of an inactive endpoint too)."""
    now = now or timezone.now()
    hopeless = Delivery.objects.filter(status=PENDING, give_up_at__lte=now)
    failed = 0
    while batch := list(hopeless.values_list("pk", flat=True)[:500]):
        failed += Delivery.objects.filter(pk__in=batch, status=PENDING).update(
            status=Delivery.Status.FAILED, failed_at=now
        )
    if failed:
        logger.error("gave up on %d webhook delivery(ies)", failed)
    return failed


def deliveries_retry_now(delivery_ids: list[int], *, now: datetime | None = None) -> int:
    """Make owed or given-up deliveries due at once, with a fresh GIVE_UP; the number made due.

    Delivered ones stay delivered, and one a sender holds right now is left to it: either would
    reach the receiver twice.
    """
    now = now or timezone.now()
    with transaction.atomic():
        count = (
            Delivery.objects.filter(pk__in=delivery_ids, status__in=[PENDING, Delivery.Status.FAILED])
            .exclude(leased_until__gt=now)
            .update(status=PENDING, due_at=now, failed_at=None, give_up_at=now + GIVE_UP)
        )
        if count:
            enqueue_after_commit(
                "webhooks.deliveries_send_due", what=f"{count} webhook delivery(ies) retried"
            )
    return count
