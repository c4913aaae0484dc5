"""The confirmation-mail limits that must hold exactly: per mailbox, per recipient domain, and
the portal's own ceiling.

They are counted in the database, inside the transaction that would add one more mail, so a
flushed or absent cache cannot reopen them and two submissions at once cannot both squeeze
past the last free slot. The mailbox and domain limits count the mails themselves, under a lock
per mailbox and per domain; the ceiling, which every submission shares, counts in one row per
window, locked for one statement. Only what creates a request and a mail is
counted: a submission for an IP that is not listed costs the rightful sender nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet

from portal_lib import prepared
from portal_lib.rates import parse_rate
from requests_app.models import Mail, MailWindow

# Advisory lock classes (PostgreSQL's two-key form): one lock per mailbox, then one per
# recipient domain, always in that order, so two submissions cannot wait on each other.
MAILBOX_LOCKS, DOMAIN_LOCKS = 0x6D62, 0x646D


class MailLimitReached(Exception):
    """No confirmation mail may go out now; `scope` is mailbox, domain or portal."""

    def __init__(self, scope: str, retry_after: int):
        super().__init__(f"{scope} mail limit reached; retry after {retry_after} s")
        self.scope = scope
        self.retry_after = retry_after


def mail_limits_check(*, mailbox: str, domain: str, now: datetime) -> None:
    """Raise MailLimitReached unless one more confirmation mail fits the mailbox's and the
    domain's limits (windows sliding over the mails themselves).

    Call first in the transaction that creates the mail: the locks it takes until the commit
    make the count and the insert after it one step, and order concurrent submissions for one
    mailbox (whose supersede steps would otherwise lock each other's rows in opposite orders).
    Submissions for other mailboxes and domains go on beside them.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # One round trip; PostgreSQL evaluates the select list in order.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s)), pg_advisory_xact_lock(%s, hashtext(%s))",
                [MAILBOX_LOCKS, mailbox, DOMAIN_LOCKS, domain],
            )
    # (SQLite: the IMMEDIATE transaction already holds the database's write lock.)
    confirmations = Mail.objects.filter(kind=Mail.Kind.CONFIRMATION)
    for scope, rate, mails in (
        ("mailbox", settings.DELIST_MAILBOX_RATE, confirmations.filter(mailbox=mailbox)),
        ("domain", settings.DELIST_DOMAIN_RATE, confirmations.filter(email_domain=domain)),
    ):
        retry_after = _retry_after(mails, rate=rate, now=now)
        if retry_after:
            raise MailLimitReached(scope, retry_after)


@dataclass(frozen=True)
class CeilingSlot:
    """One confirmation mail counted against the portal's ceiling, in the window it fell in."""

    period: int
    starts_at: datetime


def mail_ceiling_reserve(*, now: datetime, only_if: tuple[str, list] | None = None) -> CeilingSlot | None:
    """Count one more confirmation mail against the portal's ceiling (DELIST_MAIL_RATE), or raise
    MailLimitReached when its window is full. With `only_if`, an SQL condition and its
    parameters (PostgreSQL), the same statement asks it first, and counts nothing and returns
    None when it does not hold: a submission asks there whether its IP is listed.

    One counter row per window, changed only while it stays under the limit, so no two
    submissions can squeeze past the last slot. It is counted in a transaction of its own,
    before the submission's, so that the row every submission needs is locked for one statement
    rather than for a whole submission and its commit; that commit does not wait for the disk
    either (a crash of PostgreSQL itself in that instant forgets a count, never a request). A
    submission that fails after this hands the slot back with mail_ceiling_release. The window
    is fixed (the clock's hours for N/h): at its turn a new one starts empty. Call it outside
    any transaction (views run in autocommit): inside one, the count and its lock would last as
    long as that transaction, and so would the commit that does not wait for the disk.
    """
    limit, period = parse_rate(settings.DELIST_MAIL_RATE)
    starts_at = datetime.fromtimestamp(now.timestamp() // period * period, tz=UTC)
    # As the ORM writes the column (SQLite keeps naive UTC text), so release() finds the row.
    window = [period, connection.ops.adapt_datetimefield_value(starts_at)]
    postgresql = connection.vendor == "postgresql"
    if only_if is None:
        sql, params = _ceiling_sql(None, postgresql=postgresql), [*window, limit]
    else:
        condition, condition_params = only_if
        sql, params = _ceiling_sql(condition, postgresql=postgresql), [*condition_params, *window, limit]
    with connection.cursor() as cursor:
        if postgresql:
            # Prepared (parsing and planning it cost PostgreSQL as much as running it), in one
            # message with its setting: one transaction of its own in autocommit, one round trip.
            statement = prepared.statement(sql)
            prepared.execute(cursor, statement, params, first="SET LOCAL synchronous_commit TO OFF")
        else:
            cursor.execute(sql, params)
        row = cursor.fetchone()
    if only_if is None:
        sent = row[0] if row else None
    else:
        holds, sent = row
        if not holds:
            return None
    if sent is None:  # the window is full: nothing was changed
        ends_in = (starts_at + timedelta(seconds=period) - now).total_seconds()
        raise MailLimitReached("portal", max(1, math.ceil(ends_in)))
    return CeilingSlot(period, starts_at)


@cache
def _ceiling_sql(condition: str | None, *, postgresql: bool) -> str:
    """The ceiling's upsert of the window's count (parameters: period, window start, limit),
    asking `condition` first when there is one (its parameters before those)."""
    table = connection.ops.quote_name(MailWindow._meta.db_table)
    insert = f"INSERT INTO {table} (period, starts_at, sent)"
    count = (
        f"ON CONFLICT (period, starts_at) DO UPDATE SET sent = {table}.sent + 1 "
        f"WHERE {table}.sent < %s RETURNING sent"
    )
    if condition is None:
        return f"{insert} VALUES (%s, %s, 1) {count}"
    # Typed for PREPARE, which cannot tell a bare value's type in a SELECT list.
    values = "CAST(%s AS integer), CAST(%s AS timestamp with time zone)" if postgresql else "%s, %s"
    return (
        f"WITH asked AS (SELECT {condition} AS holds), "
        f"counted AS ({insert} SELECT {values}, 1 FROM asked WHERE holds {count}) "
        "SELECT holds, (SELECT sent FROM counted) FROM asked"
    )


def mail_ceiling_release(slot: CeilingSlot) -> None:
    """Hand back a slot whose submission created nothing."""
    MailWindow.objects.filter(period=slot.period, starts_at=slot.starts_at, sent__gt=0).update(
        sent=F("sent") - 1
    )


def mail_windows_prune(*, now: datetime) -> int:
    """Forget the ceiling's windows that ended over a day ago; how many. (A handful of rows: one
    per window, and a period per DELIST_MAIL_RATE the portal ever ran with.)"""
    deleted = 0
    for period in set(MailWindow.objects.values_list("period", flat=True)):
        ended = MailWindow.objects.filter(
            period=period, starts_at__lt=now - timedelta(days=1, seconds=period)
        )
        deleted += ended.delete()[0]
    return deleted


def _retry_after(mails: QuerySet, *, rate: str, now: datetime) -> int:
    """0 when one more mail fits the rate; otherwise seconds until the oldest counted one ages out."""
    limit, period = parse_rate(rate)
    window = timedelta(seconds=period)
    recent = mails.filter(created_at__gt=now - window).order_by("-created_at")
    # The limit-th newest mail is the one whose ageing out frees a slot.
    blocking = recent.values_list("created_at", flat=True)[limit - 1 : limit]
    if not blocking:
        return 0
    return seconds_until(blocking[0] + window, now=now)


def seconds_until(at: datetime, *, now: datetime) -> int:
    """A Retry-After: whole seconds from now until `at`, at least 1."""
    return max(1, math.ceil((at - now).total_seconds()))
