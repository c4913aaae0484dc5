"""The confirmation-mail limits that must hold exactly: per mailbox, per recipient domain, and
the portal's own ceiling.

They are counted in the database from the mails themselves, inside the transaction that would
add one more, so a flushed or absent cache cannot reopen them and two submissions at once
cannot both squeeze past the last free slot. Only what creates a request and a mail is
counted: a submission for an IP that is not listed costs the rightful sender nothing.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from portal_lib.rates import parse_rate
from requests_app.models import Mail

# Any constant: the advisory lock that orders submissions while they count (PostgreSQL).
_SUBMIT_LOCK = 0x64656C69


class MailLimitReached(Exception):
    """No confirmation mail may go out now; `scope` is mailbox, domain or portal."""

    def __init__(self, scope: str, retry_after: int):
        super().__init__(f"{scope} mail limit reached; retry after {retry_after} s")
        self.scope = scope
        self.retry_after = retry_after


def mail_limits_check(*, mailbox: str, domain: str, now: datetime) -> None:
    """Raise MailLimitReached unless one more confirmation mail fits every limit.

    Call inside the transaction that creates the mail.
    """
    if connection.vendor == "postgresql":
        # Held until commit, so the count below and the insert after it are one step.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SUBMIT_LOCK])
    # (SQLite: the IMMEDIATE transaction already holds the database's write lock.)
    confirmations = Mail.objects.filter(kind=Mail.Kind.CONFIRMATION)
    for scope, rate, mails in (
        ("mailbox", settings.DELIST_MAILBOX_RATE, confirmations.filter(request__mailbox=mailbox)),
        ("domain", settings.DELIST_DOMAIN_RATE, confirmations.filter(request__email_domain=domain)),
        ("portal", settings.DELIST_MAIL_RATE, confirmations),
    ):
        retry_after = _retry_after(mails, rate=rate, now=now)
        if retry_after:
            raise MailLimitReached(scope, retry_after)


def _retry_after(mails: QuerySet, *, rate: str, now: datetime) -> int:
    """0 when one more mail fits the rate; otherwise seconds until the oldest counted one ages out."""
    limit, period = parse_rate(rate)
    window = timedelta(seconds=period)
    recent = mails.filter(created_at__gt=now - window).order_by("-created_at")
    # The limit-th newest mail is the one whose ageing out frees a slot.
    blocking = recent.values_list("created_at", flat=True)[limit - 1 : limit]
    if not blocking:
        return 0
    return max(1, math.ceil((blocking[0] + window - now).total_seconds()))
