"""The outbox: mail owed to senders, written in the transaction of the change it reports and
sent by the worker until it goes out or is given up.

Nothing here runs inside the sweep's delistings: mail has its own task and its own time budget,
so a hanging SMTP server never holds a due delisting back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from requests_app import emails
from requests_app.models import DelistRequest, Mail, State
from requests_app.tokens import confirmation_secret, hash_token, link_token, new_nonce
from requests_app.wakeups import wake_after_commit

logger = logging.getLogger(__name__)

# How long a sender claiming a mail holds it before another may retry: a few SMTP timeouts.
MAIL_LEASE = timedelta(seconds=90)
# The first retry waits this long, each further one twice as long, up to MAIL_RETRY_MAX.
MAIL_RETRY_FIRST = timedelta(seconds=30)
MAIL_RETRY_MAX = timedelta(hours=1)
BATCH = 100
SEND_DUE = "requests_app.mails_send_due"  # the task that sends what is owed (tasks.py)
# The owed-mail condition of mail_unsent_idx, as the claim's raw SQL writes it.
UNSENT_SQL = "sent_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL"


def owe(request: DelistRequest, kind: str) -> Mail:
    """Owe the sender a mail; queued to the worker once the surrounding transaction commits.

    Owed from the moment it is written (the clock, not the caller's `now`): a sweep that runs
    late for a due delisting still sends its mail at once.
    """
    mail = Mail.objects.create(request=request, kind=kind)
    queue_send(mail)
    return mail


def confirmation_nonce() -> tuple[str, str]:
    """A new link's nonce and the token hash a request stores for it."""
    nonce = new_nonce()
    return nonce, hash_token(confirmation_secret(nonce))


def owe_confirmation(request: DelistRequest, *, nonce: str | None = None) -> Mail:
    """The confirmation mail, with the link it will carry fixed now: every attempt sends the same
    link, so a mail re-sent after a lost acknowledgement never kills the one that arrived.

    `nonce`: from confirmation_nonce(), when the request was written with its hash already."""
    if nonce is None:
        nonce, token_hash = confirmation_nonce()
        DelistRequest.objects.filter(pk=request.pk).update(token_hash=token_hash)
    mail = confirmation_for(request, nonce=nonce)
    mail.save(force_insert=True)
    queue_send(mail)
    return mail


def confirmation_for(request: DelistRequest, *, nonce: str) -> Mail:
    """The confirmation mail for a request, not yet written (a submission writes its own rows)."""
    return Mail(
        request=request if request.pk else None,
        kind=Mail.Kind.CONFIRMATION,
        token_nonce=nonce,
        mailbox=request.mailbox,
        email_domain=request.email_domain,
    )


def queue_send(mail: Mail) -> None:
    """Wake the worker's mail sender for a written mail once the surrounding transaction
    commits: after a burst, one wake-up and one SMTP connection serve a whole batch."""
    wake_after_commit(SEND_DUE, what=f"mail {mail.pk}")


# The mails that report a change of state, by kind.
REPORTS = {
    Mail.Kind.COMPLETED: emails.send_completed,
    Mail.Kind.NEEDS_REVIEW: emails.send_needs_review,
    Mail.Kind.REJECTED: emails.send_rejected,
    Mail.Kind.REVOKED: emails.send_revoked,
}


def owe_many(request_ids: list[int], kind: str) -> None:
    """One mail of `kind` for each request, written in one statement (the sweep's batches), and
    one wake-up of the mail sweep for all of them once the transaction commits."""
    Mail.objects.bulk_create([Mail(request_id=pk, kind=kind) for pk in request_ids], batch_size=1000)
    if request_ids:
        wake_after_commit(SEND_DUE, what=f"{len(request_ids)} {kind} mail(s)")


def _unsent():
    return Mail.objects.filter(sent_at__isnull=True, cancelled_at__isnull=True, failed_at__isnull=True)


def mails_send_due(*, now: datetime | None = None, budget: float | None = None) -> int:
    """Send owed mail that is due, BATCH claimed mails per SMTP connection, until none is left
    or `budget` seconds are spent."""
    now = now or timezone.now()
    budget = settings.DELIST_SWEEP_INTERVAL if budget is None else budget
    deadline = time.monotonic() + budget
    sent = 0
    while time.monotonic() < deadline:
        # The lease covers the whole batch: what is not tried by the deadline is handed back.
        batch = _mails_claim_due(now=now, lease=MAIL_LEASE + timedelta(seconds=budget))
        if not batch:
            break
        sent += _mails_send(batch, now=now, deadline=deadline)
    return sent


def mail_send(*, mail_id: int, now: datetime | None = None) -> bool:
    """Send one owed mail if it is due and nobody else holds it; True when sent."""
    now = now or timezone.now()
    claimed = _mail_claim(mail_id, now=now)
    return bool(claimed) and _mails_send(claimed, now=now) == 1


def _mails_claim_due(*, now: datetime, lease: timedelta) -> list[int]:
    """Hold up to BATCH due mails for `lease` (one more attempt each); their ids.

    In due_at order, along the partial mail_unsent_idx: the scan stops after the rows it takes,
    where a filter on anything else let a planner with stale statistics walk every owed mail
    for each claim after a burst (issue 10).
    """
    table = connection.ops.quote_name(Mail._meta.db_table)
    if connection.vendor == "postgresql":
        # SKIP LOCKED: a second sender takes the next mails instead of waiting for these.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET due_at = %s, attempts = attempts + 1 WHERE id IN ("
                f"SELECT id FROM {table} WHERE {UNSENT_SQL} AND due_at <= %s "
                "ORDER BY due_at FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id",
                [now + lease, now, BATCH],
            )
            return [pk for (pk,) in cursor.fetchall()]
    # SQLite: the IMMEDIATE transaction holds the database's only write lock.
    with transaction.atomic():
        ids = list(_unsent().filter(due_at__lte=now).order_by("due_at").values_list("pk", flat=True)[:BATCH])
        Mail.objects.filter(pk__in=ids).update(due_at=now + lease, attempts=F("attempts") + 1)
    return ids


def _mail_claim(mail_id: int, *, now: datetime) -> list[int]:
    """Hold one mail for MAIL_LEASE if it is owed and due; [mail_id] or []."""
    with transaction.atomic():
        # Found by primary key alone and checked here: with the owed-mail conditions in its
        # WHERE, a planner with stale statistics picks mail_unsent_idx for this too.
        mail = Mail.objects.select_for_update(skip_locked=True).filter(pk=mail_id).first()
        if mail is None or mail.sent_at or mail.cancelled_at or mail.failed_at or mail.due_at > now:
            return []
        Mail.objects.filter(pk=mail_id).update(due_at=now + MAIL_LEASE, attempts=F("attempts") + 1)
    return [mail_id]


def _mails_send(ids: list[int], *, now: datetime, deadline: float | None = None) -> int:
    """Send claimed mails over one SMTP connection; the number sent."""
    mails = list(Mail.objects.select_related("request").filter(pk__in=ids).order_by("pk"))
    smtp = get_connection()
    try:
        with _commits_without_waiting_for_the_disk():
            sent, failed = _mails_deliver(mails, smtp=smtp, now=now, deadline=deadline)
    finally:
        with suppress(Exception):
            smtp.close()
    if sent or failed:
        logger.info("%d mail(s) sent, %d failed", sent, failed)
    return sent


def _mails_deliver(
    mails: list[Mail], *, smtp: BaseEmailBackend, now: datetime, deadline: float | None
) -> tuple[int, int]:
    """Each mail in turn, its success or failure recorded on its own; those not tried by
    `deadline` are handed back. (sent, failed)."""
    sent, failed, is_open = 0, 0, False
    for n, mail in enumerate(mails):
        if deadline is not None and time.monotonic() >= deadline:
            # Never tried: owed again at once, without an attempt counted.
            untried = [m.pk for m in mails[n:]]
            Mail.objects.filter(pk__in=untried).update(due_at=now, attempts=F("attempts") - 1)
            logger.info("mail sweep stopped at its budget; %d mail(s) wait for the next", len(untried))
            break
        if mail.kind == Mail.Kind.CONFIRMATION and not _confirmation_awaited(mail):
            # Superseded or expired since: nothing to confirm any more.
            Mail.objects.filter(pk=mail.pk).update(cancelled_at=now)
            continue
        if not is_open:
            try:
                smtp.open()
                is_open = True
            except Exception as e:  # noqa: BLE001  (SMTP away: back off, retry)
                # Each mail left would fail the same way, at the cost of one more time-out.
                for rest in mails[n:]:
                    _mail_failed(rest, e, now=now)
                return sent, failed + len(mails) - n
        try:
            expires_at = _mail_deliver(mail, smtp=smtp, now=now)
        except Exception as e:  # noqa: BLE001  (SMTP and template errors alike: back off, retry)
            _mail_failed(mail, e, now=now)
            failed += 1
            # The socket may be broken (a time-out, say): the next mail starts afresh.
            _smtp_drop(smtp)
            is_open = False
            continue
        _mail_sent(mail, expires_at=expires_at)
        sent += 1
    return sent, failed


def _confirmation_awaited(mail: Mail) -> bool:
    """Whether the request still waits for the link this confirmation mail carries."""
    request = mail.request
    return request.state == State.PENDING and request.token_hash == hash_token(
        confirmation_secret(mail.token_nonce)
    )


def _mail_deliver(mail: Mail, *, smtp: BaseEmailBackend, now: datetime) -> datetime | None:
    """Send one claimed mail; for a confirmation, when its link expires."""
    request = mail.request
    if mail.kind != Mail.Kind.CONFIRMATION:
        REPORTS[mail.kind](request, connection=smtp)
        return None
    # The link fixed when the mail was owed; its lifetime starts with the first mail that goes out.
    request.token_expires_at = request.token_expires_at or now + timedelta(seconds=settings.DELIST_TOKEN_TTL)
    secret = confirmation_secret(mail.token_nonce)
    emails.send_confirmation(request, link_token(request.status_key, secret), connection=smtp)
    return request.token_expires_at


@contextmanager
def _commits_without_waiting_for_the_disk() -> Iterator[None]:
    """Record the batch's outcomes without a WAL flush for each (1 to 2 ms here, as much as the
    SMTP exchange). Only PostgreSQL itself crashing in the next fraction of a second loses a
    mark, and then the mail goes out twice, as it does when a worker dies before recording it."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        # The connection outlives this batch (CONN_MAX_AGE): the sweep's commits wait as usual.
        # If it broke, or its transaction aborted, the setting went with it.
        with suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def _mail_sent(mail: Mail, *, expires_at: datetime | None) -> None:
    # The request's row before its mail's, the order every writer keeps (a submission that
    # supersedes this request locks it, then cancels its mails): the other order deadlocked.
    with transaction.atomic():
        if expires_at is not None:
            DelistRequest.objects.filter(
                pk=mail.request_id, state=State.PENDING, token_expires_at__isnull=True
            ).update(token_expires_at=expires_at)
        Mail.objects.filter(pk=mail.pk).update(sent_at=timezone.now(), last_error="")


def _mail_failed(mail: Mail, error: Exception, *, now: datetime) -> None:
    retry_in = min(MAIL_RETRY_MAX, MAIL_RETRY_FIRST * 2 ** min(mail.attempts - 1, 16))
    Mail.objects.filter(pk=mail.pk).update(
        due_at=now + retry_in, last_error=f"{type(error).__name__}: {error}"[:2000]
    )
    logger.warning("mail %s (%s) failed: %s; retrying in %s", mail.pk, mail.kind, error, retry_in)


def _smtp_drop(smtp: BaseEmailBackend) -> None:
    """Forget a connection without QUIT, which on a hung server would wait out another time-out."""
    client = getattr(smtp, "connection", None)  # the smtplib.SMTP of Django's SMTP backend
    if client is not None:
        with suppress(Exception):
            client.close()
        smtp.connection = None


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
