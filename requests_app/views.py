from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from blocklist.ip_paste import MAX_PASTE
from blocklist.services import lookup
from portal_lib.client_ip import client_ip
from portal_lib.rates import client_limited
from requests_app import outlook, policy, services
from requests_app.forms import CheckForm, DelistRequestForm
from requests_app.limits import MailLimitReached

NOT_LISTED = _(
    "%(ip)s is not on our blocklist, so there is nothing to delist. If your mail is refused, "
    "read the whole rejection message: it names the list that refused it."
)


def _lookup(form: CheckForm) -> dict | None:
    """The listing status of the form's IP, when the form holds a valid one, and what a request
    for it would lead to, asked of the same policy that will decide."""
    if not form.is_bound or "ip" not in form.cleaned_data:
        return None
    address = form.cleaned_data["ip"]
    entries = lookup(address)
    result = {"ip": address, "entries": entries, "taken_from_paste": form.taken_from_paste}
    if not entries:
        return result
    if not policy.allows_self_service(entries):
        # A range, or an entry marked for review: a reviewer decides whatever the ladder says,
        # so its count is not asked (one query fewer).
        ranges = [entry for entry in entries if not entry.is_single_address]
        return {**result, "review_cause": "listing", "range": ranges[0] if ranges else None}
    standing = policy.standing(str(address), entries, now=timezone.now())
    return {**result, "standing": standing, "review_cause": outlook.review_cause(standing, entries)}


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
    lookup = None
    if check_form.is_bound and check_form.is_valid():
        if limited := client_limited(request, group="lookup", rate=settings.DELIST_LOOKUP_RATE):
            return _too_many(request, limited.retry_after, check_form=check_form)
        lookup = _lookup(check_form)
    # The request form gets the address the check took, else what was given (as far as it fits).
    prefill = str(lookup["ip"]) if lookup else request.GET.get("ip", "").strip()[:MAX_PASTE]
    return _home(
        request,
        check_form=check_form,
        lookup=lookup,
        delist_form=DelistRequestForm(initial={"ip": prefill}),
    )


def _too_many(request: HttpRequest, retry_after: int, **context) -> HttpResponse:
    """429: the sender is told when to come back, in words and in Retry-After."""
    response = _home(
        request,
        delist_form=context.pop("delist_form", DelistRequestForm()),
        status=429,
        too_many=True,
        retry_at=timezone.now() + timedelta(seconds=retry_after),
        **context,
    )
    response["Retry-After"] = str(retry_after)
    return response


@require_POST
def submit(request: HttpRequest) -> HttpResponse:
    form = DelistRequestForm(request.POST)
    if not form.is_valid():
        return _home(request, delist_form=form, status=400)
    email, address = form.cleaned_data["email"], form.cleaned_data["ip"]
    if limited := client_limited(request, group="submit", rate=settings.DELIST_SUBMIT_RATE):
        return _too_many(request, limited.retry_after, delist_form=form)
    try:
        delist_request = services.request_submit(
            email=email,
            ip=address,
            language=translation.get_language() or "en",
            client_ip=client_ip(request) or None,
        )
    except MailLimitReached as e:
        return _too_many(request, e.retry_after, delist_form=form, mail_limit=e.scope)
    if delist_request is None:
        # Told beside the field and in the summary, like any other reason nothing was sent.
        form.add_error("ip", ValidationError(NOT_LISTED, code="not_listed", params={"ip": address}))
        check_form = CheckForm(initial={"ip": str(address)})
        return _home(request, delist_form=form, check_form=check_form, status=400)
    return redirect("requests:status", key=delist_request.status_key)


def _invalid_link(request: HttpRequest, error: services.ConfirmationError) -> HttpResponse:
    code = 404 if error.reason == "unknown" else 410
    return render(
        request,
        "requests_app/confirm_invalid.html",
        {"reason": error.reason, "delist_request": error.request},
        status=code,
    )


# The session keeps, per request whose link this browser opened, the token's hash: never the
# token itself. One entry per request, so two tabs confirm two different requests.
SESSION_CONFIRMATIONS = "delist_confirmations"
MAX_CONFIRMATIONS_IN_SESSION = 10


@never_cache
@require_safe
def confirm_link(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link. Changes nothing: mail scanners open links too.

    What identifies the request moves into the session and the browser goes on to a URL
    without the token, so it cannot leak through the Referer header.
    """
    try:
        delist_request, token_hash = services.request_for_link(token)
    except services.ConfirmationError as e:
        return _invalid_link(request, e)
    opened = dict(request.session.get(SESSION_CONFIRMATIONS, {}))
    opened.pop(str(delist_request.pk), None)
    opened[str(delist_request.pk)] = token_hash
    request.session[SESSION_CONFIRMATIONS] = dict(list(opened.items())[-MAX_CONFIRMATIONS_IN_SESSION:])
    return redirect(f"{reverse('requests:confirm')}?request={delist_request.pk}")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    # The button's form names the request it confirms; the session must hold its link.
    request_id = (request.POST if request.method == "POST" else request.GET).get("request", "")
    token_hash = request.session.get(SESSION_CONFIRMATIONS, {}).get(request_id)
    if request.method == "POST":
        try:
            delist_request = services.request_confirm(request_id=request_id, token_hash=token_hash)
        except services.ConfirmationError as e:
            return _invalid_link(request, e)
        opened = dict(request.session.get(SESSION_CONFIRMATIONS, {}))
        opened.pop(request_id, None)
        request.session[SESSION_CONFIRMATIONS] = opened
        return redirect("requests:status", key=delist_request.status_key)
    try:
        delist_request = services.request_for_confirmation(request_id=request_id, token_hash=token_hash)
    except services.ConfirmationError as e:
        return _invalid_link(request, e)
    return render(
        request,
        "requests_app/confirm.html",
        {
            "delist_request": delist_request,
            "propagation_delay": settings.DELIST_PROPAGATION_DELAY,
            "outlook": outlook.for_confirmation(delist_request),
        },
    )
