"""Personal data retention: DELIST_RETENTION_DAYS after a request closed, the portal forgets who
asked (email, mailbox, recipient domain, client address) and keeps what happened.

The facts stay: the IP that was delisted, the states, the times, the audit trail. Only text that
names the sender is rewritten: their address or client address inside a reason a reviewer or
sender wrote, and a mail's last SMTP error (which quotes the recipient).

The mail limits count a mailbox's and a domain's confirmation mails over a window of at most a
few days; settings.py refuses a retention shorter than those windows, so an erased request is
never one the limits still count.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from blocklist.models import Event
from requests_app.models import DelistRequest, Mail

logger = logging.getLogger(__name__)

BATCH = 500
ERASED = "[erased]"


def closed_before(cutoff: datetime) -> Q:
    # A completed request carries completed_at; every other way of closing sets closed_at.
    return Q(closed_at__lte=cutoff) | Q(closed_at__isnull=True, completed_at__lte=cutoff)


def requests_erase_personal_data(*, now: datetime | None = None) -> int:
    """Erase the sender's personal data from requests closed more than DELIST_RETENTION_DAYS
    ago, BATCH per transaction; the number erased. A sweep step."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DELIST_RETENTION_DAYS)
    # An erased request has no email: it is never picked again.
    old = DelistRequest.objects.filter(closed_before(cutoff)).exclude(email="")
    erased = 0
    while ids := list(old.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        erased += _erase(ids)
    if erased:
        logger.info(
            "erased the personal data of %d request(s) closed over %d days ago",
            erased,
            settings.DELIST_RETENTION_DAYS,
            extra={"requests_erased": erased},
        )
    return erased


def _patterns(email: str, mailbox: str, client_ip: str | None, ip: str) -> re.Pattern | None:
    names = {n for n in (email, mailbox) if n}
    # The delisted IP is the fact the trail is about; a sender writing from that very server
    # leaves nothing else to erase.
    if client_ip and client_ip != ip:
        names.add(client_ip)
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # Whole addresses only: 1.2.3.4 must not eat into 11.2.3.45.
    return re.compile(rf"(?<![\w.:@+-])(?:{alternatives})(?![\w.:@-])", re.IGNORECASE)


def _erase(ids: list[int]) -> int:
    with transaction.atomic():
        rows = list(
            DelistRequest.objects.select_for_update()
            .filter(pk__in=ids)
            .exclude(email="")
            .values_list("pk", "email", "mailbox", "client_ip", "ip", "decision_reason")
        )
        if not rows:
            return 0
        patterns = {
            pk: _patterns(email, mailbox, client_ip, ip) for pk, email, mailbox, client_ip, ip, _r in rows
        }
        reasons = [
            DelistRequest(pk=pk, decision_reason=_scrub(reason, patterns[pk]))
            for pk, *_rest, reason in rows
            if reason and _scrub(reason, patterns[pk]) != reason
        ]
        DelistRequest.objects.bulk_update(reasons, ["decision_reason"])
        events = []
        for event in (
            Event.objects.filter(request_id__in=patterns)
            .exclude(reason="")
            .only("pk", "reason", "request_id")
        ):
            scrubbed = _scrub(event.reason, patterns[event.request_id])
            if scrubbed != event.reason:
                event.reason = scrubbed
                events.append(event)
        Event.objects.bulk_update(events, ["reason"], batch_size=BATCH)
        Mail.objects.filter(request_id__in=patterns).exclude(last_error="").update(last_error="")
        # The mailbox and domain a confirmation carries for the mail limits, long past their windows.
        Mail.objects.filter(request_id__in=patterns).exclude(mailbox="", email_domain="").update(
            mailbox="", email_domain=""
        )
        DelistRequest.objects.filter(pk__in=patterns).update(
            email="", mailbox="", email_domain="", client_ip=None
        )
    return len(rows)


def _scrub(text: str, pattern: re.Pattern | None) -> str:
    return pattern.sub(ERASED, text) if pattern else text
