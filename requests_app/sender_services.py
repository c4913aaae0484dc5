"""What a sender may do from the status page: have the link sent again, cancel a request that
waits for confirmation, or withdraw one before it takes effect.

Each is one change of state with its audit event, in the pattern of services.py. Each refusal
raises ActionRefused with a reason the page explains; nothing changes then.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from blocklist import audit
from requests_app import limits, outbox
from requests_app.models import DelistRequest, Mail, State

logger = logging.getLogger(__name__)

# A mail takes a moment to arrive: a second one sooner would only crowd the inbox.
RESEND_AFTER = timedelta(minutes=2)


class ActionRefused(Exception):
    """The action does not apply to the request as it stands; `reason` names why.

    Reasons: not_pending, still_sending, undeliverable, too_soon, mail_limit (with `scope`),
    due, completed, joined, not_withdrawable.
    """

    def __init__(self, reason: str, *, retry_after: int = 0, scope: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.scope = scope


def _latest_confirmation(request: DelistRequest) -> Mail | None:
    return request.mails.filter(kind=Mail.Kind.CONFIRMATION).order_by("-created_at", "-pk").first()


def _resend_refusal(request: DelistRequest, *, now: datetime) -> ActionRefused | None:
    if request.state != State.PENDING:
        return ActionRefused("not_pending")
    last = _latest_confirmation(request)
    if last is None:
        return None
    if last.failed_at:
        return ActionRefused("undeliverable")
    if last.sent_at is None and last.cancelled_at is None:
        # Still owed: the outbox keeps trying, and a second mail would wait in the same queue.
        return ActionRefused("still_sending")
    if last.sent_at and now - last.sent_at < RESEND_AFTER:
        wait = math.ceil((last.sent_at + RESEND_AFTER - now).total_seconds())
        return ActionRefused("too_soon", retry_after=max(1, wait))
    return None


def request_resend_link(*, request: DelistRequest, now: datetime | None = None) -> DelistRequest:
    """Owe the sender a new confirmation mail through the outbox, as submitting does.

    The new link replaces the old one (the earlier mail's link stops working), and its lifetime
    starts when its own mail first goes out, like the first link's. Counts against the mail
    limits like any confirmation mail; MailLimitReached is raised as ActionRefused("mail_limit").
    """
    now = now or timezone.now()
    if refusal := _resend_refusal(request, now=now):
        raise refusal
    try:
        # The portal's ceiling counts every confirmation mail, as for a submission.
        slot = limits.mail_ceiling_reserve(now=now)
    except limits.MailLimitReached as e:
        raise ActionRefused("mail_limit", retry_after=e.retry_after, scope=e.scope) from e
    try:
        with transaction.atomic():
            # The mailbox's lock first, as request_submit takes it: a submission superseding this
            # request holds it while locking this row, so taking the row first could deadlock.
            limits.mail_limits_check(mailbox=request.mailbox, domain=request.email_domain, now=now)
            request = DelistRequest.objects.select_for_update().get(pk=request.pk)
            if refusal := _resend_refusal(request, now=now):  # changed while we waited
                raise refusal
            DelistRequest.objects.filter(pk=request.pk).update(token_expires_at=None)
            outbox.owe_confirmation(request)
            audit.record(audit.Action.LINK_RESENT, actor=audit.SENDER, request=request, at=now)
    except limits.MailLimitReached as e:
        limits.mail_ceiling_release(slot)
        raise ActionRefused("mail_limit", retry_after=e.retry_after, scope=e.scope) from e
    except BaseException:
        limits.mail_ceiling_release(slot)
        raise
    request.refresh_from_db()
    logger.info("request %s: confirmation link sent again", request.pk)
    return request


def request_cancel(*, request: DelistRequest, now: datetime | None = None) -> DelistRequest:
    """The sender calls off a request that waits for confirmation: its link dies, its unsent
    mail is dropped. Once confirmed, withdrawing is the way (request_withdraw)."""
    now = now or timezone.now()
    with transaction.atomic():
        # The request's row first (this UPDATE locks it), then its mails': the order every writer keeps.
        if not DelistRequest.objects.filter(pk=request.pk, state=State.PENDING).update(
            state=State.CANCELLED, closed_at=now, token_hash=None, token_expires_at=None
        ):
            raise ActionRefused("not_pending")
        _drop_unsent_mail(request, now=now)
        audit.record(audit.Action.CANCELLED, actor=audit.SENDER, request=request, at=now)
    request.refresh_from_db()
    logger.info("request %s cancelled by the sender", request.pk)
    return request


def request_withdraw(*, request: DelistRequest, now: datetime | None = None) -> DelistRequest:
    """The sender takes back a request in review, or an approved one before it is due: nothing
    is delisted. Refused once due (the sweep may be at it), and once another sender's request
    joined it (they are waiting for this delisting too)."""
    now = now or timezone.now()
    joined = DelistRequest.objects.filter(merged_into=OuterRef("pk"), state=State.MERGED)
    with transaction.atomic():
        # The claim: delisting_apply takes an approved row only once effective_at has passed.
        withdrawable = DelistRequest.objects.filter(pk=request.pk).filter(
            ~Exists(joined), state__in=[State.NEEDS_REVIEW, State.APPROVED]
        )
        if not (
            withdrawable.filter(state=State.NEEDS_REVIEW).update(state=State.WITHDRAWN, closed_at=now)
            or withdrawable.filter(state=State.APPROVED, effective_at__gt=now).update(
                state=State.WITHDRAWN, closed_at=now, effective_at=None
            )
        ):
            raise _withdraw_refusal(request, now=now)
        _drop_unsent_mail(request, now=now)
        audit.record(audit.Action.WITHDRAWN, actor=audit.SENDER, request=request, at=now)
    request.refresh_from_db()
    logger.info("request %s withdrawn by the sender", request.pk)
    return request


def _withdraw_refusal(request: DelistRequest, *, now: datetime) -> ActionRefused:
    current = DelistRequest.objects.get(pk=request.pk)
    if current.state == State.COMPLETED:
        return ActionRefused("completed")
    if current.state == State.APPROVED and current.effective_at and current.effective_at <= now:
        return ActionRefused("due")
    if current.state in (State.NEEDS_REVIEW, State.APPROVED):
        return ActionRefused("joined")
    return ActionRefused("not_withdrawable")


def _drop_unsent_mail(request: DelistRequest, *, now: datetime) -> None:
    Mail.objects.filter(request=request, sent_at__isnull=True, cancelled_at__isnull=True).update(
        cancelled_at=now
    )
