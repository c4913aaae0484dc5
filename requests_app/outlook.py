"""What the confirmation and status pages tell a sender besides the timeline: who delists the IP
and when, where it stands on the self-service ladder, what still covers it, and how far the
change has reached. Each state asks only the queries it needs (tests/test_query_counts.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from blocklist.models import Entry
from blocklist.services import lookup
from requests_app import policy
from requests_app.models import DelistRequest, Propagation, State

# Without JavaScript, a page whose news is this close tells the reader when to reload it.
RELOAD_WITHIN = timedelta(minutes=10)
# A little after the moment: the worker's sweep needs a few seconds.
RELOAD_MARGIN = timedelta(seconds=5)


@dataclass
class Outlook:
    standing: policy.Standing | None = None
    # Why a reviewer decides: "all" (DELIST_REVIEW_ALL), "listing" (a range or no
    # self-service), "limit" (the ladder is used up); "" for self-service.
    review_cause: str = ""
    # The active entries covering the IP now; None where the page does not ask.
    covering: list[Entry] | None = None
    # A completed request's entries: what it delisted.
    removed: list[Entry] = field(default_factory=list)
    propagation: Propagation | None = None
    # The request in progress this one would join, or has joined.
    joins: DelistRequest | None = None
    # When a reload shows news, if that is soon; None when nothing is about to change.
    reload_at: datetime | None = None

    @property
    def not_listed(self) -> bool:
        return self.covering is not None and not self.covering


def status_requests() -> QuerySet:
    """The status page's one query: the request, its propagation, the one it joined, and
    whether others joined it (a withdrawal is refused then)."""
    joined = DelistRequest.objects.filter(merged_into=OuterRef("pk"), state=State.MERGED)
    return DelistRequest.objects.select_related("propagation", "merged_into").annotate(
        has_joined=Exists(joined)
    )


def review_cause(standing: policy.Standing, entries: Sequence[Entry]) -> str:
    if standing.self_service:
        return ""
    if settings.DELIST_REVIEW_ALL:
        return "all"
    if not policy.allows_self_service(entries):
        return "listing"
    return "limit"


def _ahead(ip: str, entries: list[Entry], *, now: datetime) -> Outlook:
    standing = policy.standing(ip, entries, now=now)
    return Outlook(standing=standing, review_cause=review_cause(standing, entries), covering=entries)


def for_confirmation(request: DelistRequest, *, now: datetime | None = None) -> Outlook:
    """What pressing Delist IP will lead to, asked of the policy that will decide."""
    now = now or timezone.now()
    entries = lookup(ipaddress.ip_address(request.ip), now=now)
    if not entries:
        return Outlook(covering=[])
    outlook = _ahead(request.ip, entries, now=now)
    outlook.joins = (
        DelistRequest.objects.filter(ip=request.ip, state__in=[State.NEEDS_REVIEW, State.APPROVED])
        .exclude(pk=request.pk)
        .order_by("created_at", "pk")
        .first()
    )
    return outlook


def for_status(request: DelistRequest, *, now: datetime | None = None) -> Outlook:
    now = now or timezone.now()
    state = request.state
    if state in (State.PENDING, State.NEEDS_REVIEW):
        entries = lookup(ipaddress.ip_address(request.ip), now=now)
        outlook = _ahead(request.ip, entries, now=now) if entries else Outlook(covering=[])
    elif state == State.APPROVED:
        # Decided: only the ladder's count is news (no entries needed for it).
        outlook = Outlook(standing=policy.standing(request.ip, [], now=now))
        outlook.reload_at = _reload_at(request.effective_at, now=now)
    elif state == State.COMPLETED:
        outlook = Outlook(
            covering=lookup(ipaddress.ip_address(request.ip), now=now),
            removed=list(request.entries.all()),
            propagation=_propagation(request),
        )
        if outlook.propagation and outlook.propagation.next_check_at:
            outlook.reload_at = _reload_at(outlook.propagation.next_check_at, now=now)
    elif state == State.MERGED:
        outlook = Outlook(joins=request.merged_into)
        if outlook.joins and outlook.joins.state == State.APPROVED:
            outlook.reload_at = _reload_at(outlook.joins.effective_at, now=now)
    else:
        outlook = Outlook()
    return outlook


def _propagation(request: DelistRequest) -> Propagation | None:
    try:
        return request.propagation
    except Propagation.DoesNotExist:
        return None


def _reload_at(at: datetime | None, *, now: datetime) -> datetime | None:
    """A little after `at`, when that is close; None otherwise."""
    if at is None or at - now > RELOAD_WITHIN:
        return None
    return max(at, now) + RELOAD_MARGIN
