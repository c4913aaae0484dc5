"""Every change of state of a delist request lives here, and nowhere else (the sender's own
actions, sending the link again, cancelling and withdrawing, in sender_services.py).

Views, admin actions, Celery tasks and management commands call these functions.
The database is the only record of what is due: tasks merely wake things up early.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from blocklist import audit
from blocklist.exports import exports_refresh_if_changed
from blocklist.import_jobs import import_jobs_resume
from blocklist.ip import IPAddress
from blocklist.services import entries_delist_for_requests, entries_expire, listed_sql, lookup
from monitoring.heartbeats import SWEEP, heartbeat_record
from portal_lib.queueing import enqueue
from requests_app import limits, mailboxes, outbox, policy, propagation, submission_sql, wakeups
from requests_app.models import DelistRequest, ExpiryReason, Mail, State
from requests_app.retention import requests_erase_personal_data
from requests_app.tokens import hash_token, looks_like_key, split_link_token
from webhooks import events as webhook_events

logger = logging.getLogger(__name__)


def _fields(request_id: int, state: str) -> dict:
    """A change of state as fields of its log line (LOG_FORMAT=json)."""
    return {"delist_request": request_id, "state": str(state)}


# Rows claimed per statement by the sweep's steps: memory stays flat however much is due.
BATCH = 500


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
    """Open a request and owe the sender a confirmation mail; None when the IP is not listed.

    Raises MailLimitReached when the mail limits leave no room: nothing is created then.
    """
    now = timezone.now()
    slot = _ceiling_reserve_if_listed(ip, now=now)
    if slot is None:
        return None
    try:
        nonce, token_hash = outbox.confirmation_nonce()
        request = DelistRequest(
            token_hash=token_hash,
            email=email,
            mailbox=mailboxes.mailbox(email),
            email_domain=mailboxes.recipient_domain(email),
            ip=str(ip),
            language=language,
            client_ip=client_ip,
            created_at=now,
        )
        if connection.vendor == "postgresql":
            superseded = _submit_in_one_trip(request, nonce=nonce, now=now)
        else:
            superseded = _submit(request, nonce=nonce, now=now)
    except BaseException:
        limits.mail_ceiling_release(slot)
        raise
    logger.info(
        "request %s submitted for %s", request.pk, request.ip, extra=_fields(request.pk, State.PENDING)
    )
    if superseded:
        logger.info("request %s superseded %s", request.pk, superseded)
    return request


def _ceiling_reserve_if_listed(ip: IPAddress, *, now: datetime) -> limits.CeilingSlot | None:
    """The mail ceiling's slot for a submission whose IP is listed; None, counting nothing, if
    it is not."""
    if connection.vendor == "postgresql":
        # One statement asks both: a round trip fewer.
        return limits.mail_ceiling_reserve(now=now, only_if=listed_sql(ip, now=now))
    return limits.mail_ceiling_reserve(now=now) if lookup(ip, now=now) else None


def _submit(request: DelistRequest, *, nonce: str, now: datetime) -> list[int]:
    """request_submit's writes through the ORM; the ids of the requests it superseded."""
    with transaction.atomic():
        # First: the mailbox's lock also orders concurrent submissions for it, whose supersede
        # steps would otherwise lock each other's rows in opposite orders (deadlock).
        limits.mail_limits_check(mailbox=request.mailbox, domain=request.email_domain, now=now)
        request.save(force_insert=True)
        audit.record(audit.Action.SUBMITTED, actor=audit.SENDER, request=request, at=now)
        superseded = _supersede_pending(mailbox=request.mailbox, ip=request.ip, by=request, now=now)
        outbox.owe_confirmation(request, nonce=nonce)
    return superseded


def _submit_in_one_trip(request: DelistRequest, *, nonce: str, now: datetime) -> list[int]:
    """The same writes as _submit, as one message to PostgreSQL (submission_sql), which also
    asks the mail sender's wake-up mark (wakeups): no round trip of its own."""
    mail = outbox.confirmation_for(request, nonce=nonce)
    event = audit.event(audit.Action.SUBMITTED, actor=audit.SENDER, at=now)
    superseded, marked = submission_sql.submit(
        request=request, mail=mail, event=event, now=now, wake=outbox.SEND_DUE
    )
    if marked:
        transaction.on_commit(lambda: wakeups.queue_marked(outbox.SEND_DUE, what=f"mail {mail.pk}"))
    return superseded


def _supersede_pending(*, mailbox: str, ip: str, by: DelistRequest, now: datetime) -> list[int]:
    older = DelistRequest.objects.filter(mailbox=mailbox, ip=ip, state=State.PENDING).exclude(pk=by.pk)
    ids = list(older.values_list("pk", flat=True))
    if not ids:
        return []
    DelistRequest.objects.filter(pk__in=ids, state=State.PENDING).update(
        state=State.SUPERSEDED, superseded_by=by, closed_at=now, token_expires_at=None, token_hash=None
    )
    Mail.objects.filter(request_id__in=ids, sent_at__isnull=True, cancelled_at__isnull=True).update(
        cancelled_at=now
    )
    for pk in ids:
        audit.record(
            audit.Action.SUPERSEDED, actor=audit.SENDER, request_id=pk, reason=f"by request #{by.pk}", at=now
        )
    return ids


# --- confirming -------------------------------------------------------------------


def _pending_with(request: DelistRequest | None, token_hash: str, *, now: datetime) -> DelistRequest:
    """The request, if it is pending and its link's hash is token_hash; else the reason it is not."""
    if request is None:
        raise ConfirmationError("unknown")
    if request.state == State.SUPERSEDED:
        raise ConfirmationError("superseded", request)
    if request.state == State.CANCELLED:
        raise ConfirmationError("cancelled", request)
    if request.state == State.EXPIRED or (
        request.state == State.PENDING and request.token_expires_at and request.token_expires_at <= now
    ):
        raise ConfirmationError("expired", request)
    if request.state != State.PENDING:
        raise ConfirmationError("used", request)
    if not hmac.compare_digest(request.token_hash or "", token_hash):
        raise ConfirmationError("unknown")
    return request


def request_for_link(token: str, *, now: datetime | None = None) -> tuple[DelistRequest, str]:
    """The pending request an emailed link belongs to and the hash that proves it, or
    ConfirmationError. Changes nothing."""
    now = now or timezone.now()
    parts = split_link_token(token)
    if parts is None:
        if looks_like_key(token):  # a bare token, as links read before they carried the status key
            token_hash = hash_token(token)
            return _pending_with(
                DelistRequest.objects.filter(token_hash=token_hash).first(), token_hash, now=now
            ), token_hash
        raise ConfirmationError("unknown")
    status_key, secret = parts
    token_hash = hash_token(secret)
    request = DelistRequest.objects.filter(status_key=status_key).first()
    return _pending_with(request, token_hash, now=now), token_hash


def request_for_confirmation(
    *, request_id: object, token_hash: object, now: datetime | None = None
) -> DelistRequest:
    """The pending request whose link this browser opened (its id and the hash the session
    keeps), or ConfirmationError. Changes nothing."""
    now = now or timezone.now()
    if not isinstance(token_hash, str) or not str(request_id).isdigit() or len(str(request_id)) > 18:
        raise ConfirmationError("unknown")
    return _pending_with(DelistRequest.objects.filter(pk=int(str(request_id))).first(), token_hash, now=now)


def request_confirm(*, request_id: object, token_hash: object, now: datetime | None = None) -> DelistRequest:
    """The sender pressed Delist IP: record the covering entries, and policy decides at once:
    approved (self-service) or in review. There is no state in between."""
    now = now or timezone.now()
    with transaction.atomic():
        request = request_for_confirmation(request_id=request_id, token_hash=token_hash, now=now)
        entries = lookup(_ip(request), now=now)
        if not entries:
            # Delisted meanwhile: nothing to confirm, and no self-service delisting spent on it.
            raise ConfirmationError("not_listed", request)
        if joined := _join_request_in_progress(request, token_hash=token_hash, entries=entries, now=now):
            return joined
        why_review = policy.needs_review(request.ip, entries, now=now)
        decision = (
            {"state": State.NEEDS_REVIEW} if why_review else _approval(actor=audit.SELF_SERVICE, now=now)
        )
        # Only one confirmation wins, even with two clicks at once; the link dies with it.
        if not DelistRequest.objects.filter(pk=request.pk, state=State.PENDING, token_hash=token_hash).update(
            confirmed_at=now, token_hash=None, **decision
        ):
            raise ConfirmationError("used", request)
        request.refresh_from_db()
        request.entries.set(entries)
        audit.record(audit.Action.CONFIRMED, actor=audit.SENDER, request=request, at=now)
        if why_review:
            audit.record(
                audit.Action.SENT_TO_REVIEW,
                actor=audit.SELF_SERVICE,
                request=request,
                reason=why_review,
                at=now,
            )
            outbox.owe(request, Mail.Kind.NEEDS_REVIEW)
            webhook_events.request_needs_review(request, reason=why_review)
        else:
            audit.record(audit.Action.APPROVED, actor=audit.SELF_SERVICE, request=request, at=now)
    logger.info(
        "request %s confirmed: %s", request.pk, request.state, extra=_fields(request.pk, request.state)
    )
    return request


# With the IP's hash as second key, the lock that serialises confirmations for one IP (PostgreSQL).
_CONFIRM_LOCK = 0x636F6E66


def _join_request_in_progress(
    request: DelistRequest, *, token_hash: str, entries: list, now: datetime
) -> DelistRequest | None:
    """Merge a confirmation into the request for the same IP already in review or approved:
    one row in the review queue and one delisting, however many senders ask. None when there
    is no such request; the merged request otherwise."""
    if connection.vendor == "postgresql":
        # Two confirmations for one IP at once: the second sees the first's outcome.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_CONFIRM_LOCK, request.ip])
    # Locked, so a withdrawal or the sweep cannot close it under us; the oldest first.
    in_progress = (
        DelistRequest.objects.select_for_update()
        .filter(ip=request.ip, state__in=[State.NEEDS_REVIEW, State.APPROVED])
        .exclude(pk=request.pk)
        .order_by("created_at", "pk")
        .first()
    )
    if in_progress is None:
        return None
    if not DelistRequest.objects.filter(pk=request.pk, state=State.PENDING, token_hash=token_hash).update(
        state=State.MERGED, confirmed_at=now, token_hash=None, merged_into=in_progress, closed_at=now
    ):
        raise ConfirmationError("used", request)
    request.refresh_from_db()
    request.entries.set(entries)
    audit.record(audit.Action.CONFIRMED, actor=audit.SENDER, request=request, at=now)
    audit.record(
        audit.Action.MERGED,
        actor=audit.SENDER,
        request=request,
        reason=f"joined request #{in_progress.pk}",
        at=now,
    )
    logger.info("request %s confirmed and joined request %s", request.pk, in_progress.pk)
    return request


def _approval(*, actor: str, now: datetime, reason: str = "") -> dict:
    """The fields of an approval, the same for self-service and reviewers."""
    return {
        "state": State.APPROVED,
        "decided_at": now,
        "decided_by": actor,
        "effective_at": now + timedelta(seconds=settings.DELIST_PROPAGATION_DELAY),
        "decision_reason": reason,
    }


def request_approve(
    *, request: DelistRequest, actor: str, reason: str = "", now: datetime | None = None
) -> bool:
    """A reviewer schedules the delisting DELIST_PROPAGATION_DELAY from now, as self-service
    does. False when the request is not waiting for a decision (someone else decided)."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = DelistRequest.objects.filter(pk=request.pk, state=State.NEEDS_REVIEW).update(
            **_approval(actor=actor, reason=reason, now=now)
        )
        if updated:
            audit.record(audit.Action.APPROVED, actor=actor, request=request, reason=reason, at=now)
    request.refresh_from_db()
    if updated:
        logger.info(
            "request %s approved by %s, due at %s",
            request.pk,
            actor,
            request.effective_at.isoformat(),
            extra=_fields(request.pk, State.APPROVED),
        )
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
            outbox.owe(request, Mail.Kind.REJECTED)
    request.refresh_from_db()
    if updated:
        logger.info("request %s rejected by %s", request.pk, actor, extra=_fields(request.pk, State.REJECTED))
    return bool(updated)


def request_revoke(*, request: DelistRequest, actor: str, reason: str, now: datetime | None = None) -> bool:
    """A reviewer takes back an approval before it is due; the request ends rejected, with a
    reason the sender reads. False when it is not approved or already due (the sweep may be at it)."""
    if not reason.strip():
        raise ValueError("a revocation needs a reason the sender can read")
    now = now or timezone.now()
    with transaction.atomic():
        # The claim: delisting_apply takes the same row only once effective_at has passed.
        updated = DelistRequest.objects.filter(
            pk=request.pk, state=State.APPROVED, effective_at__gt=now
        ).update(
            state=State.REJECTED,
            decided_at=now,
            decided_by=actor,
            decision_reason=reason,
            effective_at=None,  # nothing is due any more
            closed_at=now,
        )
        if updated:
            audit.record(audit.Action.REVOKED, actor=actor, request=request, reason=reason, at=now)
            outbox.owe(request, Mail.Kind.REVOKED)
    request.refresh_from_db()
    if updated:
        logger.info(
            "request %s: approval revoked by %s", request.pk, actor, extra=_fields(request.pk, State.REJECTED)
        )
    return bool(updated)


def _ip(request: DelistRequest) -> IPAddress:
    return ipaddress.ip_address(request.ip)


# --- the sweep --------------------------------------------------------------------


def delisting_apply(*, request_id: int, now: datetime | None = None) -> bool:
    """Delist what an approved, due request covers; True if this call did it.

    The conditional UPDATE is the claim: with two workers, exactly one sees a row change.
    Then the same set-based work as the sweep's batches, for a batch of one.
    """
    now = now or timezone.now()
    with transaction.atomic():
        claimed = DelistRequest.objects.filter(
            pk=request_id, state=State.APPROVED, effective_at__lte=now
        ).update(state=State.COMPLETED, completed_at=now)
        if not claimed:
            return False
        _delistings_apply([request_id], now=now)
    logger.info("request %s completed", request_id, extra=_fields(request_id, State.COMPLETED))
    return True


def delistings_apply_due(*, now: datetime | None = None) -> int:
    """Apply every due delisting, BATCH claimed requests per transaction, set-based.

    A batch that fails is rolled back and applied again one request at a time: a request that
    still fails is logged and left for the next sweep; the others go on.
    """
    now = now or timezone.now()
    applied, failed = 0, []
    while True:
        claimed: list[int] = []
        try:
            with transaction.atomic():
                claimed = _delistings_claim_due(now=now, skip=failed)
                if not claimed:
                    break
                _delistings_apply(claimed, now=now)
        except Exception:  # noqa: BLE001  (one bad row must not hold back the others)
            if not claimed:
                raise
            logger.exception(
                "could not apply a batch of %d delistings; applying them one by one", len(claimed)
            )
            for pk in claimed:
                try:
                    applied += delisting_apply(request_id=pk, now=now)
                except Exception:  # noqa: BLE001
                    logger.exception(
                        "could not apply the delisting of request %s; the next sweep retries", pk
                    )
                    failed.append(pk)
            continue
        applied += len(claimed)
        logger.info(
            "%d delisting(s) applied in one batch",
            len(claimed),
            extra={"state": str(State.COMPLETED), "delist_requests": claimed},
        )
    return applied


def _delistings_claim_due(*, now: datetime, skip: list[int]) -> list[int]:
    """Mark up to BATCH due requests completed and return their ids: the batch's claim.

    Oldest due first, in the order of request_due_idx (state, effective_at), so the claim reads
    only the rows it takes however stale the planner's statistics are after a burst.
    """
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(DelistRequest._meta.db_table)
        # SKIP LOCKED: a second worker takes the next rows instead of waiting for these.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET state = %s, completed_at = %s WHERE id IN (SELECT id FROM {table} "
                "WHERE state = %s AND effective_at <= %s AND id <> ALL(%s::bigint[]) "
                "ORDER BY effective_at FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id",
                [State.COMPLETED, now, State.APPROVED, now, skip, BATCH],
            )
            return [pk for (pk,) in cursor.fetchall()]
    # SQLite: this IMMEDIATE transaction holds the database's only write lock already.
    due = DelistRequest.objects.filter(state=State.APPROVED, effective_at__lte=now).exclude(pk__in=skip)
    ids = list(due.order_by("effective_at").values_list("pk", flat=True)[:BATCH])
    DelistRequest.objects.filter(pk__in=ids).update(state=State.COMPLETED, completed_at=now)
    return ids


def _delistings_apply(request_ids: list[int], *, now: datetime) -> None:
    """What completing the claimed requests means, set-based: the entries recorded at
    confirmation delisted (an entry several of them cover, by the first), a "completed" event
    and a mail for each. Runs inside the claim's transaction."""
    first_request: dict[int, int] = {}
    covered = DelistRequest.entries.through.objects.filter(delistrequest_id__in=request_ids)
    for entry_id, request_id in covered.order_by("delistrequest_id").values_list(
        "entry_id", "delistrequest_id"
    ):
        first_request.setdefault(entry_id, request_id)
    entries_delist_for_requests(first_request, actor=audit.WORKER, now=now)
    audit.record_requests(audit.Action.COMPLETED, request_ids, actor=audit.WORKER, at=now)
    outbox.owe_many(request_ids, Mail.Kind.COMPLETED)
    webhook_events.requests_completed(request_ids, at=now)
    propagation.propagations_owe(request_ids, now=now)


def requests_expire_stale(*, now: datetime | None = None) -> int:
    """Expire pending requests whose link ran out, or whose confirmation mail could not be sent
    for DELIST_MAIL_GIVE_UP (the outbox marked it failed): the status page says which."""
    now = now or timezone.now()
    pending = DelistRequest.objects.filter(state=State.PENDING)
    undelivered = Mail.objects.filter(
        request=OuterRef("pk"), kind=Mail.Kind.CONFIRMATION, failed_at__isnull=False
    )
    count = 0
    for why, stale in (
        (ExpiryReason.LINK_UNUSED, pending.filter(token_expires_at__lte=now)),
        (
            ExpiryReason.UNDELIVERABLE,
            pending.filter(token_expires_at__isnull=True).filter(Exists(undelivered)),
        ),
    ):
        while ids := list(stale.order_by("pk").values_list("pk", flat=True)[:BATCH]):
            count += _requests_expire(ids, why=why, now=now)
    if count:
        logger.info("expired %d unconfirmed request(s)", count)
    return count


def _requests_expire(ids: list[int], *, why: str, now: datetime) -> int:
    with transaction.atomic():
        expired = list(
            DelistRequest.objects.select_for_update()
            .filter(pk__in=ids, state=State.PENDING)
            .values_list("pk", flat=True)
        )
        DelistRequest.objects.filter(pk__in=expired).update(
            state=State.EXPIRED, closed_at=now, token_hash=None, expiry_reason=why
        )
        Mail.objects.filter(request_id__in=expired, sent_at__isnull=True, cancelled_at__isnull=True).update(
            cancelled_at=now
        )
        for pk in expired:
            audit.record(audit.Action.EXPIRED, actor=audit.WORKER, request_id=pk, reason=why, at=now)
    return len(expired)


@dataclass
class SweepResult:
    entries_expired: int = 0
    delistings_applied: int = 0
    requests_expired: int = 0
    mails_failed: int = 0
    # The steps that raised; each is logged, and the others ran all the same.
    failed_steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.delistings_applied} delisting(s) applied, {self.requests_expired} request(s) expired, "
            f"{self.entries_expired} entry(ies) expired, {self.mails_failed} mail(s) given up"
        )
        return text + (f"; failed: {', '.join(self.failed_steps)}" if self.failed_steps else "")

    @property
    def did_something(self) -> bool:
        counts = (self.entries_expired, self.delistings_applied, self.requests_expired, self.mails_failed)
        return any(counts) or bool(self.failed_steps)


def sweep(*, now: datetime | None = None) -> SweepResult:
    """One pass over everything that is due, but mail (see outbox.mails_send_due, its own task).

    Safe to run in several workers at once. Each step stands alone: one that raises is logged
    and the others still run.
    """
    now = now or timezone.now()
    result = SweepResult()
    steps = (
        ("delistings_applied", delistings_apply_due),
        ("entries_expired", entries_expire),
        # Before expiring requests: a confirmation given up on expires its request in the same sweep.
        ("mails_failed", outbox.mails_give_up),
        ("requests_expired", requests_expire_stale),
        ("exports", lambda now: exports_refresh_if_changed()),
        ("imports_resumed", import_jobs_resume),
        # Only a wake-up: DNS is asked in a task of its own, never inside the sweep.
        ("propagations", _propagations_wake),
        ("personal_data_erased", requests_erase_personal_data),
        ("mail_windows_pruned", limits.mail_windows_prune),
        # Last: /healthz and /metrics read when a sweep last got through.
        ("heartbeat", lambda now: heartbeat_record(SWEEP, failed_steps=len(result.failed_steps))),
    )
    for name, step in steps:
        try:
            value = step(now=now)
        except Exception:  # noqa: BLE001  (a failing step must not stop the others)
            logger.exception("sweep step %s failed; the next sweep retries it", name)
            result.failed_steps.append(name)
            continue
        if hasattr(result, name):
            setattr(result, name, value)
    if result.did_something:
        logger.info("sweep: %s", result, extra=asdict(result))
    return result


def _propagations_wake(*, now: datetime) -> bool:
    """Queue the propagation checks when some are due (the completion's own wake-up was lost)."""
    return propagation.propagations_due(now=now) and enqueue(
        "requests_app.propagations_check_due", what="the propagation checks"
    )
