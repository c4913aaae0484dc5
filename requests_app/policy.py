"""Whether a confirmed request may be approved without a reviewer (README, "Review policy")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from blocklist import audit
from blocklist.models import Entry
from requests_app.models import DelistRequest, State


def allows_self_service(entries: Sequence[Entry]) -> bool:
    """Every covering entry is a single address that allows self-service.

    A covering range may hold other senders' addresses, so a person decides.
    """
    return all(entry.is_single_address and entry.self_service for entry in entries)


def self_service_delistings(ip: str, *, since: datetime) -> int:
    # A withdrawn approval delisted nothing: it does not count.
    approvals = DelistRequest.objects.filter(ip=ip, decided_by=audit.SELF_SERVICE, decided_at__gte=since)
    return approvals.exclude(state=State.WITHDRAWN).count()


def needs_review(ip: str, entries: Sequence[Entry], *, now: datetime, used: int | None = None) -> str:
    """Why a request goes to a reviewer, or "" when self-service approves it. `used`: the
    self-service count when the caller has it already."""
    if settings.DELIST_REVIEW_ALL:
        return "every request is reviewed (DELIST_REVIEW_ALL)"
    if not allows_self_service(entries):
        return "a covering entry is a range or does not allow self-service"
    window = timedelta(days=settings.DELIST_SELF_SERVICE_WINDOW_DAYS)
    if used is None:
        used = self_service_delistings(ip, since=now - window)
    if used >= settings.DELIST_SELF_SERVICE_LIMIT:
        return (
            f"{settings.DELIST_SELF_SERVICE_LIMIT} self-service delistings of this IP "
            f"in {settings.DELIST_SELF_SERVICE_WINDOW_DAYS} days already"
        )
    return ""


@dataclass(frozen=True)
class Standing:
    """Where an IP stands on the self-service ladder, as the pages tell it to the sender."""

    self_service: bool  # a confirmed request would be approved without a reviewer
    why_review: str  # "" when self_service, else the reason (as needs_review gives it)
    used: int  # self-service delistings of this IP within the window
    limit: int
    window_days: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def standing(ip: str, entries: Sequence[Entry], *, now: datetime) -> Standing:
    """The ladder for `ip` covered by `entries`: the one place the pages ask."""
    window_days = settings.DELIST_SELF_SERVICE_WINDOW_DAYS
    used = self_service_delistings(ip, since=now - timedelta(days=window_days))
    why = needs_review(ip, entries, now=now, used=used)
    return Standing(
        self_service=bool(entries) and not why,
        why_review=why,
        used=used,
        limit=settings.DELIST_SELF_SERVICE_LIMIT,
        window_days=window_days,
    )
