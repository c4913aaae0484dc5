"""Nothing is lost when the broker or the SMTP server is away: the database says what is owed."""

import time

import pytest
from django.urls import reverse

from delist_portal.celery import app as celery_app
from requests_app import services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import LISTED_IP, SENDER, free_port


@pytest.fixture
def broker_down():
    """Points Celery at a Redis port where nothing listens, with eager mode off."""
    conf = celery_app.conf
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = f"redis://127.0.0.1:{free_port()}/0", False
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield
    conf.broker_url, conf.task_always_eager = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def use_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5


def test_a_submit_with_the_broker_down_succeeds_and_the_sweep_sends_the_mail(
    client, listed, mailoutbox, broker_down, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    assert time.monotonic() - started < 15  # answered, not hung on the broker
    request = DelistRequest.objects.get()
    assert response.status_code == 302
    assert "Check your inbox" in client.get(response["Location"]).content.decode()
    assert request.state == State.PENDING
    assert mailoutbox == []
    assert Mail.objects.get().sent_at is None

    assert services.sweep().mails_sent == 1
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [SENDER]
    assert Mail.objects.get().sent_at is not None


def test_mail_owed_while_smtp_is_down_is_sent_when_it_returns(
    client, listed, settings, smtp_inbox, django_capture_on_commit_callbacks
):
    use_smtp(settings, free_port())
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    mail = Mail.objects.get()
    assert mail.sent_at is None and mail.attempts == 1
    assert "ConnectionRefusedError" in mail.last_error
    assert mail.due_at > mail.created_at  # backed off, not retried in a tight loop

    use_smtp(settings, smtp_inbox.port)
    assert services.sweep(now=mail.due_at).mails_sent == 0  # the sweep only sends what is due
    Mail.objects.filter(pk=mail.pk).update(due_at=mail.created_at)
    assert services.sweep().mails_sent == 1
    assert len(smtp_inbox.messages) == 1
    received = smtp_inbox.messages[0]
    assert received["To"] == SENDER
    assert LISTED_IP in received["Subject"]
    mail.refresh_from_db()
    assert mail.sent_at is not None and mail.attempts == 2


def test_a_resent_confirmation_replaces_the_earlier_link(
    client, listed, settings, smtp_inbox, django_capture_on_commit_callbacks
):
    use_smtp(settings, smtp_inbox.port)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    first_hash = DelistRequest.objects.get().token_hash
    # A worker died after sending but before recording it: the mail is owed again.
    Mail.objects.update(sent_at=None, due_at=Mail.objects.get().created_at)
    services.sweep()
    assert len(smtp_inbox.messages) == 2
    assert DelistRequest.objects.get().token_hash != first_hash
