"""One function per message. Each message is three templates under templates/emails/:
<name>-subject.txt, <name>-body-text.txt and <name>-body-html.html."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from requests_app.models import DelistRequest


def absolute_url(path: str) -> str:
    return f"{settings.PORTAL_BASE_URL}{path}"


def status_url(request: DelistRequest) -> str:
    return absolute_url(reverse("requests:status", args=[request.status_key]))


def _send(name: str, request: DelistRequest, context: dict) -> None:
    context = {"request": request, "status_url": status_url(request), **context}
    # The worker sends later than the sender asked: use the language they asked in.
    with translation.override(request.language):
        subject = " ".join(render_to_string(f"emails/{name}-subject.txt", context).split())
        text = render_to_string(f"emails/{name}-body-text.txt", context)
        html = render_to_string(f"emails/{name}-body-html.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [request.email])
    message.attach_alternative(html, "text/html")
    message.send()


def send_confirmation(request: DelistRequest, token: str) -> None:
    confirm_url = absolute_url(reverse("requests:confirm_link", args=[token]))
    _send("confirmation", request, {"confirm_url": confirm_url, "expires_at": request.token_expires_at})


def send_completed(request: DelistRequest) -> None:
    _send("completed", request, {})


def send_needs_review(request: DelistRequest) -> None:
    _send("needs_review", request, {})


def send_rejected(request: DelistRequest) -> None:
    _send("rejected", request, {})


def send_revoked(request: DelistRequest) -> None:
    _send("revoked", request, {})
