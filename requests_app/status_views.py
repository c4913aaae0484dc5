"""A request's status page and what the sender can do from it. The unguessable key in the URL
is the capability: whoever holds it may send the link again, cancel or withdraw."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from portal_lib.rates import client_limited
from requests_app import outlook, sender_services
from requests_app.models import DelistRequest, State
from requests_app.sender_services import ActionRefused
from requests_app.timeline import REVOKED_STEP, timeline
from requests_app.tokens import looks_like_key

REFRESHING_STATES = {State.PENDING, State.APPROVED, State.NEEDS_REVIEW}
# ?done=<what> after a successful action, and the state that proves it happened.
DONE = {"resent": State.PENDING, "cancelled": State.CANCELLED, "withdrawn": State.WITHDRAWN}
# Refusals that pass with time: 429 with Retry-After; the others cannot succeed as things stand.
RATE_REFUSALS = {"too_soon", "mail_limit", "client_limit"}


def _request_for(key: str) -> DelistRequest:
    if not looks_like_key(key):  # a NUL or junk never reaches the database
        raise Http404
    found = outlook.status_requests().filter(status_key=key).first()
    if found is None:
        raise Http404
    return found


def _page(
    request: HttpRequest, delist_request: DelistRequest, *, refusal: ActionRefused | None = None
) -> HttpResponse:
    now = timezone.now()
    ahead = outlook.for_status(delist_request, now=now)
    still_listed = delist_request.state == State.COMPLETED and bool(ahead.covering)
    steps = timeline(delist_request, still_listed=still_listed)
    done = request.GET.get("done", "")
    context = {
        "delist_request": delist_request,
        "steps": steps,
        "revoked": any(step.label == REVOKED_STEP for step in steps),
        # Only while something is about to change does the page's script look again.
        "refresh": delist_request.state in REFRESHING_STATES or ahead.reload_at is not None,
        "outlook": ahead,
        "propagation_delay": settings.DELIST_PROPAGATION_DELAY,
        "withdrawable": delist_request.state == State.NEEDS_REVIEW
        or (delist_request.state == State.APPROVED and delist_request.effective_at > now),
        "done": done if DONE.get(done) == delist_request.state else "",
        "refusal": refusal,
        "retry_at": now + timedelta(seconds=refusal.retry_after) if refusal and refusal.retry_after else None,
    }
    status = 200
    if refusal is not None:
        status = 429 if refusal.reason in RATE_REFUSALS else 409
    response = render(request, "requests_app/status.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(refusal.retry_after)
    return response


@never_cache
@require_safe
def status(request: HttpRequest, key: str) -> HttpResponse:
    return _page(request, _request_for(key))


def _after(delist_request: DelistRequest, done: str) -> HttpResponse:
    # Post/redirect/get: a reload never repeats the action.
    return redirect(f"{reverse('requests:status', args=[delist_request.status_key])}?done={done}")


@never_cache
@require_POST
def status_resend(request: HttpRequest, key: str) -> HttpResponse:
    delist_request = _request_for(key)
    # The same per-client budget as submitting: a resend is a submission's mail again.
    if limited := client_limited(request, group="submit", rate=settings.DELIST_SUBMIT_RATE):
        refusal = ActionRefused("client_limit", retry_after=limited.retry_after)
        return _page(request, delist_request, refusal=refusal)
    try:
        sender_services.request_resend_link(request=delist_request)
    except ActionRefused as refusal:
        return _page(request, delist_request, refusal=refusal)
    return _after(delist_request, "resent")


def _act(request: HttpRequest, key: str, action, done: str) -> HttpResponse:
    """Run a sender's action on the request; back to its page, saying what was done or why not."""
    delist_request = _request_for(key)
    try:
        action(request=delist_request)
    except ActionRefused as refusal:
        return _page(request, _request_for(key), refusal=refusal)
    return _after(delist_request, done)


@never_cache
@require_POST
def status_cancel(request: HttpRequest, key: str) -> HttpResponse:
    return _act(request, key, sender_services.request_cancel, "cancelled")


@never_cache
@require_POST
def status_withdraw(request: HttpRequest, key: str) -> HttpResponse:
    return _act(request, key, sender_services.request_withdraw, "withdrawn")
