"""Every change of state of a delist request lives here, and nowhere else.

Views, admin actions, Celery tasks and management commands call these functions.
The database is the only record of what is due: tasks merely wake things up early.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from blocklist import audit
from blocklist.exports import exports_refresh_if_changed
from blocklist.ip import IPAddress
from blocklist.services import entries_covering, entries_delist, entries_expire
from requests_app import emails, policy
from requests_app.models import DelistRequest, Mail, State
from requests_app.tokens import hash_token, looks_like_token, new_token

logger = logging.getLogger(__name__)

# How long a sender claiming a mail holds it before another may retry.
MAIL_LEASE = timedelta(minutes=5)
# Unsent confirmations (SMTP away for long) give up after this.
PENDING_MAX_AGE = timedelta(days=1)


class ConfirmationError(Exception):
    """A confirmation link that cannot confirm; `reason` names the page to show."""

    def __init__(self, reason: str, request: DelistRequest | None = None):
        super().__init__(reason)
        self.reason = reason
        self.request = request


# --- submitting -------------------------------------------------------------------


def request_submit(
    *, email: str, ip: IPAddress, language: str = "en", client_ip: str | None = None
) -> DelistRequest | None:
    """Open a request and owe the sender a confirmation mail; None when the IP is not listed."""
    if not entries_covering(ip).exists():
        return None
    now = timezone.now()
    with transaction.atomic():
        request = DelistRequest.objects.create(
            email=email, ip=str(ip), language=language, client_ip=client_ip, created_at=now
        )
        audit.record(audit.Action.SUBMITTED, actor=audit.SENDER, request=request, at=now)
        _supersede_pending(email=email, ip=str(ip), by=request, now=now)
        _enqueue_after_commit(Mail.objects.create(request=request, kind=Mail.Kind.CONFIRMATION))
    logger.info("request %s submitted for %s", request.pk, request.ip)
    return request


def _supersede_pending(*, email: str, ip: str, by: DelistRequest, now: datetime) -> None:
    older = DelistRequest.objects.filter(email__iexact=email, ip=ip, state=State.PENDING).exclude(pk=by.pk)
    ids = list(older.values_list("pk", flat=True))
    if not ids:
        return
    DelistRequest.objects.filter(pk__in=ids, state=State.PENDING).update(
        state=State.SUPERSEDED, superseded_by=by, closed_at=now, token_expires_at=None
    )
    Mail.objects.filter(request_id__in=ids, sent_at__isnull=True, cancelled_at__isnull=True).update(
        cancelled_at=now
    )
    for pk in ids:
        audit.record(
            audit.Action.SUPERSEDED, actor=audit.SENDER, request_id=pk, reason=f"by request #{by.pk}", at=now
        )
    logger.info("request %s superseded %s", by.pk, ids)


# --- confirming -------------------------------------------------------------------


def request_for_token(token: str, *, now: datetime | None = None) -> DelistRequest:
    """The pending request a link belongs to, or ConfirmationError. Changes nothing."""
    now = now or timezone.now()
    if not looks_like_token(token):
        raise ConfirmationError("unknown")
    request = DelistRequest.objects.filter(token_hash=hash_token(token)).first()
    if request is None:
        raise ConfirmationError("unknown")
    if request.state == State.SUPERSEDED:
        raise ConfirmationError("superseded", request)
    if request.state == State.EXPIRED or (
        request.state == State.PENDING and request.token_expires_at and request.token_expires_at <= now
    ):
        raise ConfirmationError("expired", request)
    if request.state != State.PENDING:
        raise ConfirmationError("used", request)
    return request


def request_confirm(*, token: str, now: datetime | None = None) -> DelistRequest:
    """The sender pressed Delist IP: record the covering entries and let policy decide."""
    now = now or timezone.now()
    with transaction.atomic():
        request = request_for_token(token, now=now)
        # Only one confirmation wins, even with two clicks at once.
        if not DelistRequest.objects.filter(pk=request.pk, state=State.PENDING).update(
            state=State.CONFIRMED, confirmed_at=now
        ):
            raise ConfirmationError("used", request)
        request.refresh_from_db()
        audit.record(audit.Action.CONFIRMED, actor=audit.SENDER, request=request, at=now)
        entries = list(entries_covering(_ip(request), now=now))
        request.entries.set(entries)
        why_review = policy.needs_review(request.ip, entries, now=now)
        if why_review:
            _send_to_review(request, reason=why_review, now=now)
        else:
            request_approve(request=request, actor=audit.SELF_SERVICE, now=now)
    logger.info("request %s confirmed: %s", request.pk, request.state)
    return request


def request_approve(
    *, request: DelistRequest, actor: str, reason: str = "", now: datetime | None = None
) -> bool:
    """Schedule the delisting DELIST_PROPAGATION_DELAY from now; the same for self-service and
    reviewers. False when the request is not waiting for a decision (someone else decided)."""
    now = now or timezone.now()
    effective_at = now + timedelta(seconds=settings.DELIST_PROPAGATION_DELAY)
    with transaction.atomic():
        updated = DelistRequest.objects.filter(
            pk=request.pk, state__in=[State.CONFIRMED, State.NEEDS_REVIEW]
        ).update(
            state=State.APPROVED,
            decided_at=now,
            decided_by=actor,
            effective_at=effective_at,
            decision_reason=reason,
        )
        if updated:
            audit.record(audit.Action.APPROVED, actor=actor, request=request, reason=reason, at=now)
    request.refresh_from_db()
    if updated:
        logger.info("request %s approved by %s, due at %s", request.pk, actor, effective_at.isoformat())
    return bool(updated)


def request_reject(*, request: DelistRequest, actor: str, reason: str, now: datetime | None = None) -> bool:
    """A reviewer says no, with a reason the sender reads on the status page and in a mail."""
    if not reason.strip():
        raise ValueError("a rejection needs a reason the sender can read")
    now = now or timezone.now()
    with transaction.atomic():
        updated = DelistRequest.objects.filter(pk=request.pk, state=State.NEEDS_REVIEW).update(
            state=State.REJECTED, decided_at=now, decided_by=actor, decision_reason=reason, closed_at=now
        )
        if updated:
            audit.record(audit.Action.REJECTED, actor=actor, request=request, reason=reason, at=now)
            _enqueue_after_commit(Mail.objects.create(request=request, kind=Mail.Kind.REJECTED))
    request.refresh_from_db()
    if updated:
        logger.info("request %s rejected by %s", request.pk, actor)
    return bool(updated)


def _send_to_review(request: DelistRequest, *, reason: str, now: datetime) -> None:
    DelistRequest.objects.filter(pk=request.pk, state=State.CONFIRMED).update(state=State.NEEDS_REVIEW)
    request.refresh_from_db()
    audit.record(
        audit.Action.SENT_TO_REVIEW, actor=audit.SELF_SERVICE, request=request, reason=reason, at=now
    )
    _enqueue_after_commit(Mail.objects.create(request=request, kind=Mail.Kind.NEEDS_REVIEW))


def _ip(request: DelistRequest) -> IPAddress:
    return ipaddress.ip_address(request.ip)


# --- the sweep --------------------------------------------------------------------


def delisting_apply(*, request_id: int, now: datetime | None = None) -> bool:
    """Delist what an approved, due request covers; True if this call did it.

    The conditional UPDATE is the claim: with two workers, exactly one sees a row change.
    """
    now = now or timezone.now()
    with transaction.atomic():
        claimed = DelistRequest.objects.filter(
            pk=request_id, state=State.APPROVED, effective_at__lte=now
        ).update(state=State.COMPLETED, completed_at=now)
        if not claimed:
            return False
        request = DelistRequest.objects.get(pk=request_id)
        entry_ids = list(request.entries.values_list("pk", flat=True))
        entries_delist(entry_ids, actor=audit.WORKER, request=request, now=now)
        audit.record(audit.Action.COMPLETED, actor=audit.WORKER, request=request, at=now)
        _enqueue_after_commit(Mail.objects.create(request=request, kind=Mail.Kind.COMPLETED))
    logger.info("request %s completed: %s delisted", request_id, request.ip)
    return True


def delistings_apply_due(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    due = DelistRequest.objects.filter(state=State.APPROVED, effective_at__lte=now).order_by("effective_at")
    return sum(delisting_apply(request_id=pk, now=now) for pk in due.values_list("pk", flat=True))


def requests_expire_stale(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    stale = DelistRequest.objects.filter(state=State.PENDING).filter(
        Q(token_expires_at__lte=now) | Q(token_expires_at__isnull=True, created_at__lte=now - PENDING_MAX_AGE)
    )
    ids = list(stale.values_list("pk", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        count = DelistRequest.objects.filter(pk__in=ids, state=State.PENDING).update(
            state=State.EXPIRED, closed_at=now
        )
        Mail.objects.filter(request_id__in=ids, sent_at__isnull=True, cancelled_at__isnull=True).update(
            cancelled_at=now
        )
        expired = DelistRequest.objects.filter(pk__in=ids, state=State.EXPIRED, closed_at=now)
        for pk in expired.values_list("pk", flat=True):
            audit.record(audit.Action.EXPIRED, actor=audit.WORKER, request_id=pk, at=now)
    logger.info("expired %d unconfirmed request(s)", count)
    return count


@dataclass
class SweepResult:
    entries_expired: int = 0
    delistings_applied: int = 0
    requests_expired: int = 0
    mails_sent: int = 0

    def __str__(self) -> str:
        return (
            f"{self.delistings_applied} delisting(s) applied, {self.requests_expired} request(s) expired, "
            f"{self.entries_expired} entry(ies) expired, {self.mails_sent} mail(s) sent"
        )


def sweep(*, now: datetime | None = None) -> SweepResult:
    """One pass over everything that is due. Safe to run in several workers at once."""
    now = now or timezone.now()
    result = SweepResult(
        entries_expired=entries_expire(now=now),
        delistings_applied=delistings_apply_due(now=now),
        requests_expired=requests_expire_stale(now=now),
    )
    result.mails_sent = mails_send_due(now=timezone.now())
    try:
        exports_refresh_if_changed()
    except OSError as e:  # a full disk must not stop delistings and mail
        logger.error("could not rewrite the exports in %s: %s", settings.EXPORT_DIR, e)
    if any((result.entries_expired, result.delistings_applied, result.requests_expired, result.mails_sent)):
        logger.info("sweep: %s", result)
    return result


# --- mail -------------------------------------------------------------------------


def _enqueue_after_commit(mail: Mail) -> None:
    transaction.on_commit(lambda: _enqueue(mail.pk))


def _enqueue(mail_id: int) -> None:
    from requests_app.tasks import mail_send as mail_send_task

    try:
        mail_send_task.delay(mail_id)
    except Exception as e:  # noqa: BLE001  (broker away: the sweep will send it)
        logger.warning("could not queue mail %s (%s); the next sweep will send it", mail_id, e)


# The mails that report a change of state, by kind (confirmation links are made at send time).
REPORTS = {
    Mail.Kind.COMPLETED: emails.send_completed,
    Mail.Kind.NEEDS_REVIEW: emails.send_needs_review,
    Mail.Kind.REJECTED: emails.send_rejected,
}


def mails_send_due(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    due = Mail.objects.filter(sent_at__isnull=True, cancelled_at__isnull=True, due_at__lte=now)
    return sum(mail_send(mail_id=pk) for pk in due.order_by("due_at").values_list("pk", flat=True))


def mail_send(*, mail_id: int, now: datetime | None = None) -> bool:
    """Send one owed mail if it is due and nobody else holds it; True when sent."""
    now = now or timezone.now()
    claimed = Mail.objects.filter(
        pk=mail_id, sent_at__isnull=True, cancelled_at__isnull=True, due_at__lte=now
    ).update(due_at=now + MAIL_LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return False
    mail = Mail.objects.select_related("request").get(pk=mail_id)
    try:
        if mail.kind == Mail.Kind.CONFIRMATION:
            token = _issue_token(mail.request, now=now)
            if token is None:  # superseded or expired since: nothing to confirm any more
                Mail.objects.filter(pk=mail_id).update(cancelled_at=now)
                return False
            emails.send_confirmation(mail.request, token)
        else:
            REPORTS[mail.kind](mail.request)
    except Exception as e:  # noqa: BLE001  (SMTP and template errors alike: back off, retry)
        retry_in = timedelta(seconds=min(3600, 30 * 2 ** min(mail.attempts, 7)))
        Mail.objects.filter(pk=mail_id).update(
            due_at=now + retry_in, last_error=f"{type(e).__name__}: {e}"[:2000]
        )
        logger.warning("mail %s (%s) failed: %s; retrying in %s", mail_id, mail.kind, e, retry_in)
        return False
    Mail.objects.filter(pk=mail_id).update(sent_at=timezone.now(), last_error="")
    logger.info("mail %s (%s) sent for request %s", mail_id, mail.kind, mail.request_id)
    return True


def _issue_token(request: DelistRequest, *, now: datetime) -> str | None:
    """A fresh link for a pending request; a resend replaces the previous link."""
    token = new_token()
    expires_at = now + timedelta(seconds=settings.DELIST_TOKEN_TTL)
    if not DelistRequest.objects.filter(pk=request.pk, state=State.PENDING).update(
        token_hash=hash_token(token), token_expires_at=expires_at
    ):
        return None
    request.token_expires_at = expires_at
    return token
