"""One function per message. Each message is three templates under templates/emails/:
<name>-subject.txt, <name>-body-text.txt and <name>-body-html.html.

Each takes the mail connection to send over (Django's get_connection()), so the outbox sends a
batch over one SMTP session; without one, Django opens and closes a connection for the mail."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from blocklist.services import lookup
from requests_app.models import DelistRequest


def absolute_url(path: str) -> str:
    return f"{settings.PORTAL_BASE_URL}{path}"


def status_url(request: DelistRequest) -> str:
    return absolute_url(reverse("requests:status", args=[request.status_key]))


def _send(
    name: str, request: DelistRequest, context: dict, *, connection: BaseEmailBackend | None = None
) -> None:
    context = {"request": request, "status_url": status_url(request), **context}
    # The worker sends later than the sender asked: use the language they asked in.
    with translation.override(request.language):
        subject = " ".join(render_to_string(f"emails/{name}-subject.txt", context).split())
        text = render_to_string(f"emails/{name}-body-text.txt", context)
        html = render_to_string(f"emails/{name}-body-html.html", context)
    message = EmailMultiAlternatives(
        subject, text, settings.DEFAULT_FROM_EMAIL, [request.email], connection=connection
    )
    message.attach_alternative(html, "text/html")
    message.send()


def send_confirmation(
    request: DelistRequest, token: str, *, connection: BaseEmailBackend | None = None
) -> None:
    confirm_url = absolute_url(reverse("requests:confirm_link", args=[token]))
    context = {"confirm_url": confirm_url, "expires_at": request.token_expires_at}
    _send("confirmation", request, context, connection=connection)


def send_completed(request: DelistRequest, *, connection: BaseEmailBackend | None = None) -> None:
    # An entry listed after confirmation still covers the IP: the mail must not say "removed".
    still_listed = lookup(ipaddress.ip_address(request.ip))
    _send("completed", request, {"still_listed": still_listed}, connection=connection)


def send_needs_review(request: DelistRequest, *, connection: BaseEmailBackend | None = None) -> None:
    _send("needs_review", request, {}, connection=connection)


def send_rejected(request: DelistRequest, *, connection: BaseEmailBackend | None = None) -> None:
    _send("rejected", request, {}, connection=connection)


def send_revoked(request: DelistRequest, *, connection: BaseEmailBackend | None = None) -> None:
    _send("revoked", request, {}, connection=connection)
