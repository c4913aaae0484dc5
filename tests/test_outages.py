"""Nothing is lost when the broker or the SMTP server is away: the database says what is owed."""

import re
import time
from datetime import UTC, datetime, timedelta

import time_machine
from django.urls import reverse

from requests_app import outbox, services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import LISTED_IP, SENDER, Inbox, free_port, press_delist_button


def text_part(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


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

    assert outbox.mails_send_due() == 1
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
    assert outbox.mails_send_due(now=mail.due_at - timedelta(seconds=1)) == 0  # only what is due
    Mail.objects.filter(pk=mail.pk).update(due_at=mail.created_at)
    assert outbox.mails_send_due() == 1
    assert len(smtp_inbox.messages) == 1
    received = smtp_inbox.messages[0]
    assert received["To"] == SENDER
    assert LISTED_IP in received["Subject"]
    mail.refresh_from_db()
    assert mail.sent_at is not None and mail.attempts == 2


def test_a_confirmation_sent_again_carries_the_same_link_and_the_first_one_still_works(
    client, listed, settings, smtp_inbox, django_capture_on_commit_callbacks
):
    use_smtp(settings, smtp_inbox.port)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    first_hash = DelistRequest.objects.get().token_hash
    # A worker died after SMTP took the mail but before recording it: the mail is owed again.
    Mail.objects.update(sent_at=None, due_at=Mail.objects.get().created_at)
    DelistRequest.objects.update(token_expires_at=None)
    assert outbox.mails_send_due() == 1
    assert len(smtp_inbox.messages) == 2
    links = [re.search(r"/confirm/\S+", text_part(m)).group(0) for m in smtp_inbox.messages]
    assert links[0] == links[1]
    assert DelistRequest.objects.get().token_hash == first_hash
    # The link in the mail that arrived first confirms.
    assert press_delist_button(client, links[0]).status_code == 302
    assert DelistRequest.objects.get().state == State.APPROVED


def test_the_links_lifetime_starts_when_the_mail_goes_out_not_at_submit(
    client, listed, settings, smtp_inbox, django_capture_on_commit_callbacks
):
    settings.DELIST_TOKEN_TTL = 3600
    use_smtp(settings, free_port())  # SMTP away for hours
    with time_machine.travel(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
        for _hour in range(3):
            clock.shift(timedelta(hours=1))
            outbox.mails_send_due()
            assert services.sweep().requests_expired == 0
        request = DelistRequest.objects.get()
        assert request.state == State.PENDING and request.token_expires_at is None
        use_smtp(settings, smtp_inbox.port)
        clock.shift(timedelta(hours=1))
        assert outbox.mails_send_due() == 1
        request.refresh_from_db()
        assert request.token_expires_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC) + timedelta(hours=1)
        mail = Mail.objects.get()
        # One attempt at submit, one an hour while SMTP was away, one that went through.
        assert mail.attempts == 5 and len(smtp_inbox.messages) == 1


def test_the_first_retry_waits_what_the_backoff_says(
    client, listed, settings, django_capture_on_commit_callbacks
):
    use_smtp(settings, free_port())
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    first = Mail.objects.get()
    assert first.attempts == 1
    assert 29 <= (first.due_at - first.created_at).total_seconds() <= 31
    outbox.mails_send_due(now=first.due_at)
    second = Mail.objects.get()
    assert second.attempts == 2 and second.due_at - first.due_at == timedelta(seconds=60)


def test_a_mail_unsendable_for_the_give_up_time_fails_and_its_request_expires_saying_why(
    client, listed, settings, django_capture_on_commit_callbacks
):
    use_smtp(settings, free_port())
    settings.DELIST_MAIL_GIVE_UP = 7200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    mail = Mail.objects.get()
    assert services.sweep(now=mail.created_at + timedelta(seconds=7199)).mails_failed == 0
    result = services.sweep(now=mail.created_at + timedelta(seconds=7200))
    assert result.mails_failed == 1 and result.requests_expired == 1
    mail.refresh_from_db()
    assert mail.failed_at is not None and mail.sent_at is None
    assert outbox.mails_send_due(now=mail.created_at + timedelta(days=3)) == 0  # no further attempts
    request = DelistRequest.objects.get()
    assert request.state == State.EXPIRED and request.expiry_reason == "undeliverable"
    assert "could not deliver the confirmation mail" in client.get(response["Location"]).content.decode()


def test_the_desk_sees_mail_that_was_given_up(
    admin_client, listed, settings, django_capture_on_commit_callbacks
):
    use_smtp(settings, free_port())
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    mail = Mail.objects.get()
    services.sweep(now=mail.created_at + timedelta(seconds=settings.DELIST_MAIL_GIVE_UP))
    html = admin_client.get("/admin/requests_app/mail/", {"state": "failed"}).content.decode()
    assert "ConnectionRefusedError" in html and "confirmation link" in html
    assert "0 mails" not in html
    assert (
        "ConnectionRefusedError"
        not in admin_client.get("/admin/requests_app/mail/", {"state": "sent"}).content.decode()
    )


def owe_rejections(count: int, *, bouncing: int | None = None) -> list[Mail]:
    """Rejection mails owed to `count` senders; the one numbered `bouncing` has no mailbox."""
    mails = []
    for n in range(count):
        local = "bounce" if n == bouncing else f"s{n}"
        request = DelistRequest.objects.create(
            email=f"{local}@mail.example.com", ip=LISTED_IP, state=State.REJECTED
        )
        mails.append(outbox.owe(request, Mail.Kind.REJECTED))
    return mails


def test_a_batch_of_mail_goes_out_over_one_smtp_connection(listed, settings, smtp_inbox):
    use_smtp(settings, smtp_inbox.port)
    owe_rejections(5)
    assert outbox.mails_send_due() == 5
    assert len(smtp_inbox.messages) == 5
    # aiosmtpd stamps each message with the client's address and port: one port, one session.
    assert len({m["X-Peer"] for m in smtp_inbox.messages}) == 1
    assert Mail.objects.filter(sent_at__isnull=False, attempts=1).count() == 5


class RefusingInbox(Inbox):
    """Refuses the recipient "bounce@...", as a relay that knows its mailboxes does."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_one_mail_refused_in_a_batch_backs_off_alone_and_the_others_go_out(listed, settings):
    from aiosmtpd.controller import Controller

    inbox = RefusingInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        use_smtp(settings, controller.port)
        mails = owe_rejections(5, bouncing=2)
        assert outbox.mails_send_due() == 4
    finally:
        controller.stop()
    assert len(inbox.messages) == 4
    refused = Mail.objects.get(pk=mails[2].pk)
    assert refused.sent_at is None and refused.attempts == 1
    assert "SMTPRecipientsRefused" in refused.last_error
    assert 29 <= (refused.due_at - refused.created_at).total_seconds() <= 31
    assert Mail.objects.filter(sent_at__isnull=False).count() == 4
