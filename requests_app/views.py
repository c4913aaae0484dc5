from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone, translation
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_ratelimit.core import is_ratelimited

from blocklist.services import entries_covering
from portal_lib.client_ip import client_ip, ratelimit_key
from requests_app import policy, services
from requests_app.forms import CheckForm, DelistRequestForm
from requests_app.models import DelistRequest, State
from requests_app.timeline import timeline

SESSION_TOKEN = "delist_confirmation_token"
REFRESHING_STATES = {State.PENDING, State.CONFIRMED, State.APPROVED, State.NEEDS_REVIEW}


def _lookup(form: CheckForm) -> dict | None:
    """The listing status of the form's IP, when the form holds a valid one."""
    if not form.is_bound or "ip" not in form.cleaned_data:
        return None
    address = form.cleaned_data["ip"]
    entries = list(entries_covering(address))
    return {
        "ip": address,
        "entries": entries,
        # What pressing Delist IP would lead to, asked of the same policy that will decide.
        "self_service": bool(entries) and not policy.needs_review(str(address), entries, now=timezone.now()),
    }


def _home(
    request: HttpRequest, *, delist_form: DelistRequestForm, status: int = 200, **context
) -> HttpResponse:
    check_form = context.setdefault("check_form", CheckForm())
    context = {
        "delist_form": delist_form,
        # Summarised at the top of the page, each linking to its field.
        "forms_with_errors": [form for form in (check_form, delist_form) if form.is_bound and form.errors],
        "propagation_delay": settings.DELIST_PROPAGATION_DELAY,
        **context,
    }
    return render(request, "requests_app/home.html", context, status=status)


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    check_form = CheckForm(request.GET) if "ip" in request.GET else CheckForm()
    lookup = _lookup(check_form) if check_form.is_bound and check_form.is_valid() else None
    prefill = request.GET.get("ip", "").strip()[:64]
    return _home(
        request,
        check_form=check_form,
        lookup=lookup,
        delist_form=DelistRequestForm(initial={"ip": prefill}),
    )


def _too_many(request: HttpRequest, email: str) -> bool:
    # Per client, and per address so nobody can flood a stranger's inbox.
    by_client = is_ratelimited(
        request, group="submit", key=ratelimit_key, rate=settings.DELIST_SUBMIT_RATE, increment=True
    )
    by_email = bool(email) and is_ratelimited(
        request,
        group="submit-email",
        key=lambda group, req: email.lower(),
        rate=settings.DELIST_SUBMIT_RATE,
        increment=True,
    )
    return by_client or by_email


@require_POST
def submit(request: HttpRequest) -> HttpResponse:
    form = DelistRequestForm(request.POST)
    if not form.is_valid():
        return _home(request, delist_form=form, status=400)
    email, address = form.cleaned_data["email"], form.cleaned_data["ip"]
    if _too_many(request, email):
        return _home(request, delist_form=form, status=429, too_many=True)
    delist_request = services.request_submit(
        email=email,
        ip=address,
        language=translation.get_language() or "en",
        client_ip=client_ip(request) or None,
    )
    if delist_request is None:
        return _home(
            request,
            delist_form=form,
            check_form=CheckForm(initial={"ip": str(address)}),
            lookup={"ip": address, "entries": []},
        )
    return redirect("requests:status", key=delist_request.status_key)


def _invalid_link(request: HttpRequest, error: services.ConfirmationError) -> HttpResponse:
    code = 404 if error.reason == "unknown" else 410
    return render(
        request,
        "requests_app/confirm_invalid.html",
        {"reason": error.reason, "delist_request": error.request},
        status=code,
    )


@never_cache
@require_safe
def confirm_link(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link. Changes nothing: mail scanners open links too.

    The token moves into the session and the browser goes on to a URL without it,
    so it cannot leak through the Referer header.
    """
    try:
        services.request_for_token(token)
    except services.ConfirmationError as e:
        return _invalid_link(request, e)
    request.session[SESSION_TOKEN] = token
    return redirect("requests:confirm")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    token = request.session.get(SESSION_TOKEN, "")
    if request.method == "POST":
        try:
            delist_request = services.request_confirm(token=token)
        except services.ConfirmationError as e:
            return _invalid_link(request, e)
        request.session.pop(SESSION_TOKEN, None)
        return redirect("requests:status", key=delist_request.status_key)
    try:
        delist_request = services.request_for_token(token)
    except services.ConfirmationError as e:
        return _invalid_link(request, e)
    return render(
        request,
        "requests_app/confirm.html",
        {"delist_request": delist_request, "propagation_delay": settings.DELIST_PROPAGATION_DELAY},
    )


@never_cache
@require_safe
def status(request: HttpRequest, key: str) -> HttpResponse:
    delist_request = get_object_or_404(DelistRequest, status_key=key)
    return render(
        request,
        "requests_app/status.html",
        {
            "delist_request": delist_request,
            "steps": timeline(delist_request),
            # Only while something is about to change does the page's script look again.
            "refresh": delist_request.state in REFRESHING_STATES,
        },
    )
