"""/metrics: the portal's state from the database, computed at scrape time, plus the HTTP figures.

The database figures come from a few aggregate queries run when Prometheus scrapes, so they
are the same whichever gunicorn worker answers, and nothing has to keep them up to date. The
HTTP counters live in each process (portal_lib.metrics); under gunicorn they are added up
from prometheus-client's multiprocess files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime

from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from blocklist.exports import exports_written, list_version
from blocklist.models import Entry
from monitoring import heartbeats
from requests_app.models import DelistRequest, Mail, State
from webhooks.models import Delivery

logger = logging.getLogger(__name__)


def _gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def _requests(now: datetime) -> Iterator[Metric]:
    by_state = dict(
        DelistRequest.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    family = GaugeMetricFamily("delist_requests", "Delist requests by state.", labels=["state"])
    for state in State.values:
        family.add_metric([state], by_state.get(state, 0))
    yield family

    queue = DelistRequest.objects.filter(state=State.NEEDS_REVIEW).aggregate(
        n=Count("pk"), oldest=Min("confirmed_at")
    )
    yield _gauge("delist_review_queue_requests", "Requests waiting for a reviewer.", queue["n"])
    yield _gauge(
        "delist_review_queue_oldest_age_seconds",
        "How long the oldest request in review has waited since confirmation (0 when none waits).",
        _age(now, queue["oldest"]),
    )

    due = DelistRequest.objects.filter(state=State.APPROVED, effective_at__lte=now).aggregate(
        n=Count("pk"), oldest=Min("effective_at")
    )
    yield _gauge(
        "delist_delistings_due",
        "Approved requests whose delisting is due but not applied yet (the sweep's backlog).",
        due["n"],
    )
    yield _gauge(
        "delist_delistings_due_oldest_lag_seconds",
        "How long ago the oldest unapplied delisting fell due (0 when none is due).",
        _age(now, due["oldest"]),
    )


def _mail(now: datetime) -> Iterator[Metric]:
    # Along mail_unsent_idx: owed mail is what is never sent, cancelled or given up.
    owed = Mail.objects.filter(sent_at__isnull=True, cancelled_at__isnull=True, failed_at__isnull=True)
    backlog = owed.aggregate(
        n=Count("pk"), retrying=Count("pk", filter=~Q(last_error="")), oldest=Min("created_at")
    )
    yield _gauge("delist_mail_outbox_backlog", "Mails owed to senders and not sent yet.", backlog["n"])
    yield _gauge(
        "delist_mail_outbox_retrying",
        "Owed mails whose last attempt failed (SMTP away or refusing); they are retried with backoff.",
        backlog["retrying"],
    )
    yield _gauge(
        "delist_mail_outbox_oldest_age_seconds",
        "Age of the oldest owed mail (0 when none is owed).",
        _age(now, backlog["oldest"]),
    )
    yield _gauge(
        "delist_mails_failed",
        "Mails given up on after DELIST_MAIL_GIVE_UP seconds of failures, in all.",
        Mail.objects.filter(failed_at__isnull=False).count(),
    )


def _webhooks(now: datetime) -> Iterator[Metric]:
    # Along delivery_pending_idx: what is still owed to an endpoint.
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    yield _gauge(
        "delist_webhook_backlog", "Webhook deliveries owed to endpoints and not delivered yet.", pending["n"]
    )
    yield _gauge(
        "delist_webhook_oldest_age_seconds",
        "Age of the oldest owed webhook delivery (0 when none is owed).",
        _age(now, pending["oldest"]),
    )
    yield _gauge(
        "delist_webhooks_failed",
        "Webhook deliveries given up on, in all.",
        Delivery.objects.filter(status=Delivery.Status.FAILED).count(),
    )


def _sweep_and_exports(now: datetime) -> Iterator[Metric]:
    beat = heartbeats.heartbeat_last(heartbeats.SWEEP)
    if beat is not None:
        yield _gauge(
            "delist_sweep_last_finished_timestamp_seconds",
            "When the last sweep finished (Unix time); absent until one has.",
            beat.finished_at.timestamp(),
        )
        yield _gauge(
            "delist_sweep_last_failed_steps",
            "Steps of the last sweep that raised (see the log).",
            beat.failed_steps,
        )
    version = list_version()
    yield _gauge("delist_list_version", "Changes to the active set so far (the exports compare it).", version)
    written = exports_written()
    if written is not None:
        exported, written_at = written
        yield _gauge(
            "delist_export_version",
            "The list version the files in EXPORT_DIR hold; behind delist_list_version means stale.",
            exported if exported is not None else -1,
        )
        yield _gauge(
            "delist_export_written_timestamp_seconds",
            "When the files in EXPORT_DIR were last written (Unix time).",
            written_at,
        )
        yield _gauge(
            "delist_export_age_seconds",
            "Seconds since the files in EXPORT_DIR were last written (they are rewritten on change only).",
            max(0.0, now.timestamp() - written_at),
        )


def _entries(now: datetime) -> Iterator[Metric]:
    by_version = dict(
        Entry.objects.active(now).values_list("version").annotate(n=Count("pk")).values_list("version", "n")
    )
    family = GaugeMetricFamily(
        "delist_entries_active", "Active blocklist entries by address family.", labels=["family"]
    )
    for version, family_name in ((4, "ipv4"), (6, "ipv6")):
        family.add_metric([family_name], by_version.get(version, 0))
    yield family


class DatabaseCollector:
    """Runs at every scrape. A database that does not answer shows as delist_database_up 0
    instead of failing the scrape, so the HTTP figures still arrive."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        try:
            metrics = [
                m for part in (_requests, _mail, _webhooks, _sweep_and_exports, _entries) for m in part(now)
            ]
        except DatabaseError as e:
            logger.warning("metrics: the database did not answer: %s", e)
            yield _gauge("delist_database_up", "Whether the scrape's database queries answered.", 0)
            return
        yield _gauge("delist_database_up", "Whether the scrape's database queries answered.", 1)
        yield from metrics


_DATABASE = CollectorRegistry()
_DATABASE.register(DatabaseCollector())


def _http_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker's files, the dead ones' included (their counts stay in the totals).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY  # one process: its own counters, and the process and Python figures


def scrape() -> bytes:
    """The whole exposition, in Prometheus' text format."""
    return generate_latest(_http_registry()) + generate_latest(_DATABASE)
