"""The outbox: mail owed to senders, written in the transaction of the change it reports and
sent by the worker until it goes out or is given up.

Nothing here runs inside the sweep's delistings: mail has its own task and its own time budget,
so a hanging SMTP server never holds a due delisting back.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal_lib.queueing import enqueue_after_commit
from requests_app import emails
from requests_app.models import DelistRequest, Mail, State
from requests_app.tokens import confirmation_secret, hash_token, link_token, new_nonce

logger = logging.getLogger(__name__)

# How long a sender claiming a mail holds it before another may retry: a few SMTP timeouts.
MAIL_LEASE = timedelta(seconds=90)
# The first retry waits this long, each further one twice as long, up to MAIL_RETRY_MAX.
MAIL_RETRY_FIRST = timedelta(seconds=30)
MAIL_RETRY_MAX = timedelta(hours=1)
BATCH = 100


def owe(request: DelistRequest, kind: str) -> Mail:
    """Owe the sender a mail; queued to the worker once the surrounding transaction commits.

    Owed from the moment it is written (the clock, not the caller's `now`): a sweep that runs
    late for a due delisting still sends its mail at once.
    """
    mail = Mail.objects.create(request=request, kind=kind)
    enqueue_after_commit("requests_app.mail_send", mail.pk, what=f"mail {mail.pk}")
    return mail


def owe_confirmation(request: DelistRequest) -> Mail:
    """The confirmation mail, with the link it will carry fixed now: every attempt sends the same
    link, so a mail re-sent after a lost acknowledgement never kills the one that arrived."""
    nonce = new_nonce()
    DelistRequest.objects.filter(pk=request.pk).update(token_hash=hash_token(confirmation_secret(nonce)))
    mail = Mail.objects.create(request=request, kind=Mail.Kind.CONFIRMATION, token_nonce=nonce)
    enqueue_after_commit("requests_app.mail_send", mail.pk, what=f"mail {mail.pk}")
    return mail


# The mails that report a change of state, by kind.
REPORTS = {
    Mail.Kind.COMPLETED: emails.send_completed,
    Mail.Kind.NEEDS_REVIEW: emails.send_needs_review,
    Mail.Kind.REJECTED: emails.send_rejected,
    Mail.Kind.REVOKED: emails.send_revoked,
}


def _unsent():
    return Mail.objects.filter(sent_at__isnull=True, cancelled_at__isnull=True, failed_at__isnull=True)


def mails_send_due(*, now: datetime | None = None, budget: float | None = None) -> int:
    """Send owed mail that is due, in batches, until none is left or `budget` seconds are spent."""
    now = now or timezone.now()
    budget = settings.DELIST_SWEEP_INTERVAL if budget is None else budget
    started = time.monotonic()
    sent, after_pk = 0, 0
    while time.monotonic() - started < budget:
        batch = list(
            _unsent()
            .filter(due_at__lte=now, pk__gt=after_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        if not batch:
            break
        for pk in batch:
            if time.monotonic() - started >= budget:
                logger.info("mail sweep stopped after %.0f s; the next one goes on", budget)
                break
            sent += mail_send(mail_id=pk, now=now)
        after_pk = batch[-1]
    return sent


def mail_send(*, mail_id: int, now: datetime | None = None) -> bool:
    """Send one owed mail if it is due and nobody else holds it; True when sent."""
    now = now or timezone.now()
    claimed = (
        _unsent()
        .filter(pk=mail_id, due_at__lte=now)
        .update(due_at=now + MAIL_LEASE, attempts=F("attempts") + 1)
    )
    if not claimed:
        return False
    mail = Mail.objects.select_related("request").get(pk=mail_id)
    expires_at = None
    try:
        if mail.kind == Mail.Kind.CONFIRMATION:
            expires_at = _send_confirmation(mail, now=now)
            if expires_at is None:  # superseded or expired since: nothing to confirm any more
                Mail.objects.filter(pk=mail_id).update(cancelled_at=now)
                return False
        else:
            REPORTS[mail.kind](mail.request)
    except Exception as e:  # noqa: BLE001  (SMTP and template errors alike: back off, retry)
        retry_in = min(MAIL_RETRY_MAX, MAIL_RETRY_FIRST * 2 ** min(mail.attempts - 1, 16))
        Mail.objects.filter(pk=mail_id).update(
            due_at=now + retry_in, last_error=f"{type(e).__name__}: {e}"[:2000]
        )
        logger.warning("mail %s (%s) failed: %s; retrying in %s", mail_id, mail.kind, e, retry_in)
        return False
    with transaction.atomic():
        Mail.objects.filter(pk=mail_id).update(sent_at=timezone.now(), last_error="")
        if expires_at is not None:
            # The link's lifetime starts with the first mail that went out, not at each attempt.
            DelistRequest.objects.filter(
                pk=mail.request_id, state=State.PENDING, token_expires_at__isnull=True
            ).update(token_expires_at=expires_at)
    logger.info("mail %s (%s) sent for request %s", mail_id, mail.kind, mail.request_id)
    return True


def _send_confirmation(mail: Mail, *, now: datetime) -> datetime | None:
    """Send the link fixed when the mail was owed; None when the request no longer waits for it."""
    request = mail.request
    secret = confirmation_secret(mail.token_nonce)
    if request.state != State.PENDING or request.token_hash != hash_token(secret):
        return None
    request.token_expires_at = request.token_expires_at or now + timedelta(seconds=settings.DELIST_TOKEN_TTL)
    emails.send_confirmation(request, link_token(request.status_key, secret))
    return request.token_expires_at


def mails_give_up(*, now: datetime | None = None) -> int:
    """Mark mail that could not be sent for DELIST_MAIL_GIVE_UP seconds as failed.

    The request whose confirmation failed expires in the requests sweep, which finds it by this mark.
    """
    now = now or timezone.now()
    hopeless = _unsent().filter(created_at__lte=now - timedelta(seconds=settings.DELIST_MAIL_GIVE_UP))
    failed = 0
    while batch := list(hopeless.values_list("pk", flat=True)[:BATCH]):
        failed += _unsent().filter(pk__in=batch).update(failed_at=now)
    if failed:
        logger.error("gave up on %d mail(s) after %s s of failures", failed, settings.DELIST_MAIL_GIVE_UP)
    return failed
