from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from blocklist.models import Entry


def new_status_key() -> str:
    # 128 bits: the status page URL is a capability, like the confirmation link.
    return secrets.token_urlsafe(16)


class State(models.TextChoices):
    PENDING = "pending", _("waiting for confirmation")
    EXPIRED = "expired", _("expired")
    SUPERSEDED = "superseded", _("superseded")
    NEEDS_REVIEW = "needs_review", _("in review")
    APPROVED = "approved", _("approved")
    REJECTED = "rejected", _("rejected")
    COMPLETED = "completed", _("delisted")
    # Closed by the sender: a pending request they called off, or a decision they took back.
    CANCELLED = "cancelled", _("cancelled")
    WITHDRAWN = "withdrawn", _("withdrawn")
    # Confirmed while another request for the IP was already in review or approved: it joined that one.
    MERGED = "merged", _("joined another request")


class ExpiryReason(models.TextChoices):
    LINK_UNUSED = "link_unused", _("the confirmation link was not used in time")
    UNDELIVERABLE = "undeliverable", _("the confirmation mail could not be delivered")


class DelistRequest(models.Model):
    """A sender's request to delist one IP, confirmed through one email address."""

    email = models.EmailField(_("email"))
    # The normalized recipient (requests_app.mailboxes): what the mail limits count.
    mailbox = models.CharField(_("mailbox"), max_length=254, editable=False, default="")
    email_domain = models.CharField(_("recipient domain"), max_length=253, editable=False, default="")
    ip = models.GenericIPAddressField(_("IP address"), unpack_ipv4=True)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.PENDING)
    status_key = models.CharField(max_length=32, unique=True, default=new_status_key, editable=False)
    language = models.CharField(_("language"), max_length=10, default="en")
    client_ip = models.GenericIPAddressField(_("submitted from"), null=True, blank=True)

    # Only a SHA-256 of the confirmation token; blanked once used or dead.
    token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    # Set when the confirmation mail first goes out: the link's lifetime starts then.
    token_expires_at = models.DateTimeField(_("link valid until"), null=True, blank=True)
    expiry_reason = models.CharField(
        _("why it expired"), max_length=20, choices=ExpiryReason.choices, blank=True, editable=False
    )

    created_at = models.DateTimeField(_("submitted at"), default=timezone.now)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    # "self-service" or the reviewer's username.
    decided_by = models.CharField(_("decided by"), max_length=150, blank=True)
    effective_at = models.DateTimeField(_("delisting due at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    decision_reason = models.TextField(_("reason"), blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # A merged request's: the request for the same IP it joined when confirmed (request_confirm).
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="joined", editable=False
    )
    # The entries that covered the IP at confirmation: exactly these are delisted.
    entries = models.ManyToManyField(Entry, blank=True, related_name="delist_requests", editable=False)

    class Meta:
        verbose_name = _("delist request")
        verbose_name_plural = _("delist requests")
        ordering = ["-created_at"]
        permissions = [("review_delistrequest", _("Can approve and reject delist requests"))]
        indexes = [
            models.Index(fields=["state", "effective_at"], name="request_due_idx"),
            models.Index(fields=["ip", "decided_at"], name="request_ip_decided_idx"),
            # A submission supersedes the mailbox's pending request for the IP. Only what is
            # pending: on a full index of the mailbox the planner went by state, every pending row.
            models.Index(fields=["mailbox", "ip"], name="request_pending_idx", condition=Q(state="pending")),
            # The admin's lists at a million rows: newest first (Django adds -id), by state,
            # and the review queue, oldest confirmation first.
            models.Index(fields=["created_at", "id"], name="request_created_idx"),
            models.Index(fields=["state", "created_at", "id"], name="request_state_created_idx"),
            models.Index(
                fields=["confirmed_at", "id"], name="request_review_idx", condition=Q(state="needs_review")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state="approved") | Q(effective_at__isnull=False),
                name="request_approved_has_effective_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ip} <{self.email}> ({self.state})"

    @property
    def masked_email(self) -> str:
        local, _sep, domain = self.email.partition("@")
        shown = local[:1] if len(local) <= 3 else local[:2]
        return f"{shown}{'•' * 3}@{domain}"


class Mail(models.Model):
    """An email owed to a sender: the outbox the sweep retries until it is sent.

    Written in the same transaction as the change of state it reports, so no mail is
    lost when the broker or the SMTP server is away.
    """

    class Kind(models.TextChoices):
        CONFIRMATION = "confirmation", _("confirmation link")
        COMPLETED = "completed", _("delisting done")
        NEEDS_REVIEW = "needs_review", _("sent to review")
        REJECTED = "rejected", _("rejected by a reviewer")
        REVOKED = "revoked", _("approval revoked by a reviewer")

    request = models.ForeignKey(DelistRequest, on_delete=models.CASCADE, related_name="mails")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The request's, for confirmations: the mail limits count along their own indexes, where a
    # join to the requests walked every confirmation of the window (requests_app.limits).
    mailbox = models.CharField(max_length=254, blank=True, default="", editable=False)
    email_domain = models.CharField(max_length=253, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    # When the next attempt may start; a claim pushes it forward, a failure backs it off.
    due_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Unsendable for DELIST_MAIL_GIVE_UP: no further attempts.
    failed_at = models.DateTimeField(null=True, blank=True)
    # A confirmation's link is derived from this (requests_app.tokens): the same at every attempt.
    token_nonce = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("mail")
        verbose_name_plural = _("mails")
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["created_at", "id"], name="mail_created_idx"),  # the outbox's admin list
            models.Index(
                fields=["mailbox", "created_at"], name="mail_mailbox_idx", condition=Q(kind="confirmation")
            ),
            models.Index(
                fields=["email_domain", "created_at"],
                name="mail_domain_idx",
                condition=Q(kind="confirmation"),
            ),
            models.Index(
                fields=["due_at"],
                name="mail_unsent_idx",
                condition=Q(sent_at__isnull=True, cancelled_at__isnull=True, failed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} mail for request {self.request_id}"


class MailWindow(models.Model):
    """How many confirmation mails went out in one window of the portal's ceiling (DELIST_MAIL_RATE):
    a counter, so checking the ceiling costs one row whatever the traffic (requests_app.limits)."""

    period = models.PositiveIntegerField()  # seconds: the rate's period when the window was counted
    starts_at = models.DateTimeField()
    sent = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period", "starts_at"], name="mailwindow_one_per_window")
        ]

    def __str__(self) -> str:
        return f"{self.sent} mail(s) from {self.starts_at:%Y-%m-%d %H:%M} ({self.period} s)"


class WakeUp(models.Model):
    """A wake-up of a task that looks for its own work (the mail sender) is queued and has not
    started yet: while this row is there, later work needs none, since that run will find it
    (requests_app.wakeups). In the database, so that a submission sets it in the message that
    writes its mail, and web and worker see one mark on every deployment."""

    task = models.CharField(max_length=100, primary_key=True)
    queued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.task}, queued at {self.queued_at:%Y-%m-%d %H:%M:%S}"


class ReviewQueue(DelistRequest):
    """The requests waiting for a reviewer, oldest first: the abuse desk's inbox."""

    class Meta:
        proxy = True
        verbose_name = _("request in review")
        verbose_name_plural = _("review queue")


class Propagation(models.Model):
    """How a completed delisting reached mail servers: when the exports first held it, and what
    our own DNS answered when asked afterwards (requests_app.propagation)."""

    request = models.OneToOneField(
        DelistRequest, primary_key=True, on_delete=models.CASCADE, related_name="propagation"
    )
    # The list's version once the delisting was in it: exports marked with this or later hold it.
    list_version = models.BigIntegerField()
    exported_at = models.DateTimeField(_("exports rewritten at"), null=True, blank=True)
    dns_checked_at = models.DateTimeField(_("DNS checked at"), null=True, blank=True)
    dns_listed = models.BooleanField(_("DNS still lists it"), null=True, blank=True)
    dns_answer = models.CharField(_("DNS answer"), max_length=200, blank=True)
    # When to look again; None once there is nothing left to find out.
    next_check_at = models.DateTimeField(null=True, blank=True)
    checks = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("propagation")
        verbose_name_plural = _("propagations")
        indexes = [
            models.Index(
                fields=["next_check_at"], name="propagation_due_idx", condition=Q(next_check_at__isnull=False)
            )
        ]

    def __str__(self) -> str:
        return f"propagation of request {self.request_id}"
