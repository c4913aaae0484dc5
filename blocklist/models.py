from __future__ import annotations

import ipaddress
from datetime import datetime

from django.core.validators import RegexValidator
from django.db import NotSupportedError, models
from django.db.models import Q
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# Enhanced status codes we answer with: 5.7.606 to 5.7.649, as Microsoft 365 does.
CODE_CHOICES = [(f"5.7.{n}", f"5.7.{n}") for n in range(606, 650)]
DEFAULT_CODE = "5.7.606"
code_validator = RegexValidator(r"^5\.7\.6(0[6-9]|[1-4][0-9])$", _("Use a code from 5.7.606 to 5.7.649."))


class CidrField(models.CharField):
    """PostgreSQL's `cidr` (what inet_ops indexes serve, queried with >>=); plain text elsewhere."""

    def db_type(self, connection) -> str | None:
        return "cidr" if connection.vendor == "postgresql" else super().db_type(connection)


@CidrField.register_lookup
class Covers(models.Lookup):
    """`network_cidr__covers=ip`: the network contains (or is) the address."""

    lookup_name = "covers"

    def as_sql(self, compiler, connection):
        raise NotSupportedError("covers needs PostgreSQL's inet operators")

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} >>= {rhs}::inet", [*lhs_params, *rhs_params]


def active_q(now: datetime) -> Q:
    """Entries in force at `now`: not delisted, and not past their expiry."""
    return Q(delisted_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class EntryQuerySet(models.QuerySet):
    def active(self, now: datetime | None = None) -> EntryQuerySet:
        return self.filter(active_q(now or timezone.now()))


class Entry(models.Model):
    """One listed network. Delisting stamps it; it is never deleted, and relisting makes a new row."""

    network = models.CharField(_("network"), max_length=43, help_text=_("CIDR, e.g. 203.0.113.0/24"))
    version = models.PositiveSmallIntegerField(_("IP version"), editable=False)
    # First address as fixed-width hex and prefix length: what coverage lookups use.
    network_start = models.CharField(max_length=32, editable=False)
    prefix_len = models.PositiveSmallIntegerField(_("prefix length"), editable=False)
    # The network as `cidr` on PostgreSQL, computed by the database from `network` however a row
    # is written (save, bulk_create, COPY, INSERT ... SELECT), so it can never disagree with it.
    # Lookups there probe entry_cidr_idx with >>= (migration 0006); SQLite keeps a copy of the
    # text, unused, and asks entry_coverage_idx instead.
    network_cidr = models.GeneratedField(
        expression=Cast("network", output_field=CidrField(max_length=43)),
        output_field=CidrField(max_length=43),
        db_persist=True,
    )
    reason = models.CharField(_("public reason"), max_length=500, blank=True)
    code = models.CharField(
        _("SMTP code"), max_length=7, choices=CODE_CHOICES, default=DEFAULT_CODE, validators=[code_validator]
    )
    source = models.CharField(_("source"), max_length=100, blank=True)
    listed_at = models.DateTimeField(_("listed at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    self_service = models.BooleanField(_("self-service delisting allowed"), default=True)
    delisted_at = models.DateTimeField(_("delisted at"), null=True, blank=True)
    delisted_by = models.CharField(_("delisted by"), max_length=200, blank=True)

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("blocklist entry")
        verbose_name_plural = _("blocklist entries")
        ordering = ["-listed_at"]
        indexes = [
            models.Index(fields=["network_start", "prefix_len"], name="entry_coverage_idx"),
            # The admin's list at a million rows: its default ordering (Django adds -id), and
            # the source filter's values read by skipping along an index (portal_lib.big_lists).
            models.Index(fields=["listed_at", "id"], name="entry_listed_idx"),
            models.Index(fields=["source"], name="entry_source_idx"),
            models.Index(fields=["code"], name="entry_code_idx"),  # ... and the code filter's
        ]
        constraints = [
            # At most one live entry per network: imports are idempotent, relisting makes a new row.
            models.UniqueConstraint(
                fields=["network"], condition=Q(delisted_at__isnull=True), name="entry_one_live_per_network"
            ),
            models.CheckConstraint(
                condition=Q(code__in=[c for c, _label in CODE_CHOICES]), name="entry_code_in_range"
            ),
        ]

    def __str__(self) -> str:
        return self.network

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.network)

    @property
    def is_single_address(self) -> bool:
        return self.prefix_len == (32 if self.version == 4 else 128)

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.delisted_at is None and (self.expires_at is None or self.expires_at > now)


class Event(models.Model):
    """The audit trail: one row for every change of state of an entry or a request.

    Written by the services in the same transaction as the change; nothing edits or
    deletes it (the admin is read-only, and there is no service that would).
    """

    class Action(models.TextChoices):
        LISTED = "listed", _("listed")
        DELISTED = "delisted", _("delisted")
        RELISTED = "relisted", _("relisted")
        ENTRY_EXPIRED = "entry_expired", _("listing expired")
        UPDATED = "updated", _("listing updated")
        SUBMITTED = "submitted", _("submitted")
        SUPERSEDED = "superseded", _("superseded")
        CONFIRMED = "confirmed", _("confirmed")
        SENT_TO_REVIEW = "sent_to_review", _("sent to review")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        REVOKED = "revoked", _("approval revoked")
        COMPLETED = "completed", _("completed")
        EXPIRED = "expired", _("request expired")
        LINK_RESENT = "link_resent", _("confirmation link sent again")
        CANCELLED = "cancelled", _("cancelled by the sender")
        WITHDRAWN = "withdrawn", _("withdrawn by the sender")
        MERGED = "merged", _("joined another request")

    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    action = models.CharField(_("what"), max_length=20, choices=Action.choices)
    # Who: "sender", "worker", "import", "self-service", or a reviewer's or admin's username.
    actor = models.CharField(_("who"), max_length=150)
    reason = models.TextField(_("why"), blank=True)
    entry = models.ForeignKey(
        Entry, null=True, blank=True, on_delete=models.PROTECT, related_name="events", verbose_name=_("entry")
    )
    request = models.ForeignKey(
        "requests_app.DelistRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        verbose_name=_("request"),
    )

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("audit trail")
        ordering = ["-at", "-id"]
        # The actor filter of the audit trail's admin list reads its values along this index
        # (its ordering uses the one on `at`).
        indexes = [models.Index(fields=["actor"], name="event_actor_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(entry__isnull=False) | Q(request__isnull=False), name="event_has_subject"
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} by {self.actor}"


class ListVersion(models.Model):
    """One row counting the changes to the active set, so the exports know when they are stale.

    blocklist.audit bumps it with an UPDATE in the transaction of every change; the row lock
    that takes is held until commit, so versions become visible in the order they were taken
    (sequence ids are not: a transaction holding id 10 may commit after one holding id 11).
    An export that read version N therefore holds every change up to N.
    """

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return str(self.version)


class ImportJob(models.Model):
    """A list uploaded in the admin, imported by the worker: the web request only stores it.

    The file is kept here until the import ends, so a worker that dies midway is replaced by
    the next one (importing the same list again changes nothing).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("waiting for the worker")
        RUNNING = "running", _("importing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    name = models.CharField(_("file"), max_length=255)
    source = models.CharField(_("source"), max_length=100)
    requested_by = models.CharField(_("requested by"), max_length=150)
    data = models.BinaryField(editable=False)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    lines_done = models.PositiveIntegerField(_("lines read"), default=0)
    # ImportSummary's counts and the first rejections, once there are any.
    summary = models.JSONField(null=True, blank=True, editable=False)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("uploaded at"), default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written after each batch: a running job whose heartbeat stopped lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="importjob_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class ApiKey(models.Model):
    """A machine's credential for the API. Only a hash of the key is kept: it is shown once.

    The key is 256 random bits, so a plain SHA-256 is enough (no password stretching): it
    cannot be guessed, only stolen, and the database never holds what would let it be used.
    """

    class Scope(models.TextChoices):
        READ = "read", _("read")
        WRITE = "write", _("write")

    name = models.CharField(_("name"), max_length=64, unique=True)
    scope = models.CharField(_("scope"), max_length=5, choices=Scope.choices)
    # The key's first characters, so a person can tell which key a log or a config holds.
    prefix = models.CharField(_("key starts with"), max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # Written at most once a minute per key (blocklist.api_keys), so calls are not writes.
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    request_count = models.PositiveBigIntegerField(_("requests"), default=0)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.WRITE
