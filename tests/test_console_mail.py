"""Mail on the console (EMAIL_URL=consolemail://, the embedded default): each mail printed once,
framed by banners, its link on a line of its own, and never turned into log lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.utils.log import LoggingProxy
from django.urls import reverse

from portal_lib.console_mail import RULE
from requests_app import outbox, services
from requests_app.models import DelistRequest, Mail, State
from requests_app.tokens import confirmation_secret, link_token
from tests.conftest import LISTED_IP, SENDER, link_path, press_delist_button

ROOT = Path(__file__).resolve().parents[1]
OPENING = f"{RULE}\nMAIL\n"
CLOSING = f"{RULE}\nEND OF MAIL"


@pytest.fixture
def console_mail(settings):
    settings.EMAIL_BACKEND = "portal_lib.console_mail.EmailBackend"


def submit(client, django_capture_on_commit_callbacks, ip=LISTED_IP):
    # The mail is sent when the transaction commits (eagerly here, by the worker in a real run).
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": ip})
    return DelistRequest.objects.latest("created_at")


def expected_link(request: DelistRequest) -> str:
    """The confirmation link, derived as the outbox derives it."""
    mail = Mail.objects.get(request=request, kind=Mail.Kind.CONFIRMATION)
    token = link_token(request.status_key, confirmation_secret(mail.token_nonce))
    return "https://delist.example.org" + reverse("requests:confirm_link", args=[token])


def mails_in(text: str) -> list[str]:
    """Each printed mail, from its opening banner to its closing one."""
    return [part.split(CLOSING, 1)[0] for part in text.split(OPENING)[1:]]


def test_the_confirmation_mail_is_printed_once_framed_with_its_link_on_a_line_of_its_own(
    client, listed, console_mail, capfd, django_capture_on_commit_callbacks
):
    request = submit(client, django_capture_on_commit_callbacks)
    # The mail sweep and the sweep come by afterwards: the mail is sent, they print nothing more.
    outbox.mails_send_due(budget=5)
    services.sweep()
    out, err = capfd.readouterr()

    [mail] = mails_in(out)
    assert out.count(CLOSING) == 1
    assert f"To: {SENDER}\n" in mail
    assert f"Subject: Confirm the delisting of {LISTED_IP}\n" in mail
    link = expected_link(request)
    assert f"\n{link}\n" in mail
    # The text the sender reads, not the MIME message: no encoded parts, no HTML.
    assert "Content-Transfer-Encoding" not in out and "<html" not in out
    assert "delist" not in err.lower()

    # The printed link is the one that works.
    press_delist_button(client, link_path(link))
    request.refresh_from_db()
    assert request.state != State.PENDING


def test_every_mail_of_a_delisting_is_printed_once(
    client, listed, console_mail, capfd, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 0
    request = submit(client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link_path(expected_link(request)))
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep()
    outbox.mails_send_due(budget=5)
    services.sweep()
    outbox.mails_send_due(budget=5)

    mails = mails_in(capfd.readouterr().out)
    request.refresh_from_db()
    assert request.state == State.COMPLETED
    assert [m.split("Subject: ", 1)[1].split("\n", 1)[0] for m in mails] == [
        f"Confirm the delisting of {LISTED_IP}",
        f"{LISTED_IP} has been removed from our blocklist",
    ]


def test_inside_a_celery_worker_the_mail_is_no_log_line(
    client, listed, console_mail, capfd, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    # A Celery worker replaces sys.stdout with a proxy that logs every line at WARNING.
    monkeypatch.setattr(sys, "stdout", LoggingProxy(logging.getLogger("celery.redirected"), logging.WARNING))
    with caplog.at_level(logging.WARNING, logger="celery.redirected"):
        request = submit(client, django_capture_on_commit_callbacks)
    assert [r for r in caplog.records if r.name == "celery.redirected"] == []
    [mail] = mails_in(capfd.readouterr().out)
    assert f"\n{expected_link(request)}\n" in mail


def test_consolemail_selects_the_framed_backend_and_smtp_stays_smtp():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMAIL_"))}

    def backend(email_url: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", "from django.conf import settings; print(settings.EMAIL_BACKEND)"],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "delist_portal.settings", "EMAIL_URL": email_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert backend("consolemail://") == "portal_lib.console_mail.EmailBackend"
    assert backend("smtp://127.0.0.1:1025") == "django.core.mail.backends.smtp.EmailBackend"
