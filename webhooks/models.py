"""Webhooks: endpoints the operator configures, the events the portal reports, and one delivery
per event and endpoint, retried until the receiver takes it or it is given up."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# A delivery that has not gone out for this long is marked failed (no further attempts).
GIVE_UP = timedelta(hours=48)


class EventType(models.TextChoices):
    ENTRY_LISTED = "entry.listed", _("an entry was listed")
    ENTRY_DELISTED = "entry.delisted", _("an entry was delisted")
    REQUEST_COMPLETED = "request.completed", _("a delist request was completed")
    REQUEST_NEEDS_REVIEW = "request.needs_review", _("a delist request went to review")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """A receiver of events: its URL, the secret that signs what it gets, the events it wants.

    Never deleted (deactivate it instead): its deliveries are its history.
    """

    name = models.CharField(_("name"), max_length=100, help_text=_("Who receives this, for the desk."))
    url = models.URLField(
        _("URL"), max_length=2000, help_text=_("http:// or https://; events are POSTed here as JSON.")
    )
    secret = models.CharField(
        _("secret"),
        max_length=200,
        default=new_secret,
        help_text=_("The receiver checks X-Delist-Signature with it. Keep it between the two of you."),
    )
    events = models.JSONField(_("events"), default=list)
    active = models.BooleanField(
        _("active"), default=True, help_text=_("An inactive endpoint gets nothing; its deliveries wait.")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """Something that happened, as receivers are told: written in the transaction of the change."""

    # What receivers see as "id": the same for every endpoint and every attempt, so a receiver can
    # tell a retry after a lost answer from a new event.
    uid = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(_("type"), max_length=30, choices=EventType.choices)
    at = models.DateTimeField(_("when"), default=timezone.now)
    data = models.JSONField(_("data"))

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"

    def payload(self) -> dict:
        return {"type": self.type, "id": str(self.uid), "at": self.at.isoformat(), "data": self.data}


def _give_up_at():
    return timezone.now() + GIVE_UP


class Delivery(models.Model):
    """One event owed to one endpoint: the outbox the worker sends until it is delivered."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("given up")

    event = models.ForeignKey(
        Event, on_delete=models.PROTECT, related_name="deliveries", verbose_name=_("event")
    )
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.PROTECT, related_name="deliveries", verbose_name=_("endpoint")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # When the next attempt may start; a claim pushes it forward (the lease), a failure backs it off.
    due_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    # Set while a sender holds the delivery: "retry now" leaves it alone then, or it would go twice.
    leased_until = models.DateTimeField(_("being sent until"), null=True, blank=True, editable=False)
    give_up_at = models.DateTimeField(_("give up after"), default=_give_up_at)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last status code"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-pk"]
        constraints = [
            # Exactly once per endpoint and event, whoever writes or retries it.
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_once_per_endpoint"),
        ]
        indexes = [
            models.Index(fields=["due_at"], name="delivery_pending_idx", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint}"
