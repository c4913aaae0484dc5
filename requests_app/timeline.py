"""What the status page tells a sender: the steps so far, and the one ahead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils.translation import gettext_lazy as _

from blocklist.models import Event
from requests_app.models import DelistRequest, State

REVOKED_STEP = _("Approval revoked by a reviewer")


@dataclass
class Step:
    label: str
    at: datetime | None = None
    # done: happened; current: what we are waiting for; closed: the request ended here.
    status: str = "done"


def timeline(request: DelistRequest, *, still_listed: bool = False) -> list[Step]:
    """`still_listed`: another entry covers the completed request's IP (the page looked)."""
    steps = [Step(_("Request submitted"), request.created_at)]
    if request.state == State.PENDING:
        steps.append(Step(_("Waiting for you to confirm through the link we emailed"), status="current"))
        return steps
    if request.state == State.CANCELLED:
        steps.append(Step(_("Cancelled by you"), request.closed_at, "closed"))
        return steps
    if request.state == State.SUPERSEDED:
        steps.append(
            Step(_("Replaced by a newer request for the same address and IP"), request.closed_at, "closed")
        )
        return steps
    if request.state == State.EXPIRED:
        steps.append(Step(_("The confirmation link expired unused"), request.closed_at, "closed"))
        return steps
    steps.append(Step(_("Confirmed"), request.confirmed_at))
    if request.state == State.MERGED:
        steps.append(Step(_("Joined the request already in progress for this IP"), request.closed_at))
        return steps
    if request.state == State.WITHDRAWN:
        if request.decided_at:
            steps.append(Step(_("Approved"), request.decided_at))
        steps.append(Step(_("Withdrawn by you"), request.closed_at, "closed"))
        return steps
    if request.state == State.NEEDS_REVIEW:
        steps.append(Step(_("A reviewer is looking at the listing"), status="current"))
        return steps
    if request.state == State.REJECTED:
        approved_at = _revoked_approval(request)
        if approved_at is not None:
            steps.append(Step(_("Approved"), approved_at))
            steps.append(Step(REVOKED_STEP, request.decided_at, "closed"))
        else:
            steps.append(Step(_("Rejected by a reviewer"), request.decided_at, "closed"))
        return steps
    steps.append(Step(_("Approved"), request.decided_at))
    if request.state == State.APPROVED:
        steps.append(Step(_("Scheduled for removal"), request.effective_at, "current"))
        return steps
    if still_listed:
        steps.append(Step(_("Delisted the entries this request covered"), request.completed_at))
        steps.append(Step(_("Still listed by another entry"), status="closed"))
    else:
        steps.append(Step(_("Removed from the blocklist"), request.completed_at))
    return steps


def _revoked_approval(request: DelistRequest) -> datetime | None:
    """When a rejected request had been approved, if a reviewer revoked that approval.

    A revocation ends in the same state as a rejection; only the audit trail tells them apart.
    """
    events = dict(
        request.events.filter(action__in=[Event.Action.APPROVED, Event.Action.REVOKED]).values_list(
            "action", "at"
        )
    )
    return events.get(Event.Action.APPROVED) if Event.Action.REVOKED in events else None
