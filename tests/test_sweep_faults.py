"""The sweep survives its own failures: each step stands alone, and mail never holds a
delisting back, even with an SMTP server that accepts connections and then says nothing."""

import socket
import threading
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app import outbox, services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import LISTED_IP, SENDER, press_delist_button


@pytest.fixture
def approved(client, listed, settings, django_capture_on_commit_callbacks):
    settings.DELIST_PROPAGATION_DELAY = 60
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    from django.core import mail

    link = mail.outbox[-1].body.split("https://delist.example.org", 1)[1].split()[0]
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link)
    request = DelistRequest.objects.get()
    assert request.state == State.APPROVED
    return request


def hanging_smtp(greeting: bytes = b""):
    """A server on loopback that accepts connections, says `greeting`, and then nothing more."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except TimeoutError:
                continue
            held.append(conn)
            if greeting:
                conn.sendall(greeting)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def silent_smtp():
    """Accepts connections and never answers, not even the greeting: the worst SMTP there is."""
    yield from hanging_smtp()


@pytest.fixture
def stalling_smtp():
    """Greets each connection, then never answers: every mail times out on its own."""
    yield from hanging_smtp(b"220 stall.example.org ESMTP\r\n")


@pytest.mark.parametrize(
    "broken",
    ["entries_expire", "delistings_apply_due", "requests_expire_stale", "exports_refresh_if_changed"],
)
def test_a_failing_step_is_logged_and_the_others_still_run(approved, monkeypatch, caplog, broken):
    def fail(**kwargs):
        raise RuntimeError(f"{broken} broke")

    monkeypatch.setattr(services, broken, fail)
    if broken != "delistings_apply_due":
        DelistRequest.objects.filter(pk=approved.pk).update(effective_at=approved.decided_at)
    result = services.sweep(now=approved.effective_at)
    assert f"{broken} broke" in caplog.text
    assert len(result.failed_steps) == 1
    approved.refresh_from_db()
    expected = State.APPROVED if broken == "delistings_apply_due" else State.COMPLETED
    assert approved.state == expected


def test_one_request_that_cannot_be_applied_does_not_hold_back_the_others(listing, monkeypatch, caplog):
    from blocklist.ip import parse_ip
    from blocklist.services import entries_covering

    requests = []
    for i in range(3):
        ip = f"81.2.70.{i + 1}"
        listing(ip)
        request = DelistRequest.objects.create(email=SENDER, ip=ip, state=State.NEEDS_REVIEW)
        request.entries.set(entries_covering(parse_ip(ip)))
        services.request_approve(request=request, actor="rita")
        requests.append(request)
    real = services._delistings_apply

    def flaky(request_ids, *, now):
        # Breaks every batch holding the second request: the batch of three, then that one alone.
        if requests[1].pk in request_ids:
            raise RuntimeError("this one is broken")
        return real(request_ids, now=now)

    monkeypatch.setattr(services, "_delistings_apply", flaky)
    due = max(r.effective_at for r in DelistRequest.objects.all())
    assert services.sweep(now=due).delistings_applied == 2
    assert "this one is broken" in caplog.text
    states = dict(DelistRequest.objects.values_list("pk", "state"))
    assert [states[r.pk] for r in requests] == [State.COMPLETED, State.APPROVED, State.COMPLETED]


def test_a_due_delisting_is_applied_on_time_while_smtp_hangs(approved, settings, silent_smtp):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", silent_smtp, 1
    started = time.monotonic()
    assert services.sweep(now=approved.effective_at).delistings_applied == 1
    assert time.monotonic() - started < 1  # the sweep never touched SMTP
    approved.refresh_from_db()
    assert approved.state == State.COMPLETED
    completion = Mail.objects.get(kind=Mail.Kind.COMPLETED)
    assert completion.sent_at is None

    # The mail sweep tries, times out after EMAIL_TIMEOUT, backs off, and keeps to its budget.
    started = time.monotonic()
    assert outbox.mails_send_due(budget=2) == 0
    assert time.monotonic() - started < 5
    completion.refresh_from_db()
    assert completion.attempts == 1 and "timed out" in completion.last_error.lower()
    assert completion.due_at > completion.created_at


def test_the_mail_sweep_stops_at_its_budget_and_the_next_one_goes_on(listed, settings, stalling_smtp):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", stalling_smtp, 1
    for i in range(5):
        request = DelistRequest.objects.create(
            email=f"s{i}@mail.example.com", ip=LISTED_IP, state=State.REJECTED
        )
        outbox.owe(request, Mail.Kind.REJECTED)
    started = time.monotonic()
    outbox.mails_send_due(budget=1.5)
    assert time.monotonic() - started < 4
    tried = Mail.objects.filter(attempts__gt=0).count()
    assert 1 <= tried < 5  # stopped at the budget, the rest waits for the next run
    # The rest was handed back untried: due at once, no attempt counted.
    untried = Mail.objects.filter(attempts=0)
    assert untried.count() == 5 - tried and all(m.due_at <= timezone.now() for m in untried)


def test_smtp_that_never_answers_costs_one_time_out_per_batch_not_per_mail(listed, settings, silent_smtp):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", silent_smtp, 1
    for i in range(5):
        request = DelistRequest.objects.create(
            email=f"s{i}@mail.example.com", ip=LISTED_IP, state=State.REJECTED
        )
        outbox.owe(request, Mail.Kind.REJECTED)
    started = time.monotonic()
    assert outbox.mails_send_due(budget=30) == 0
    assert time.monotonic() - started < 3  # one connection attempt for the batch, not five
    # Each mail still records its own failed attempt and backs off as if tried alone.
    for mail in Mail.objects.all():
        assert mail.attempts == 1 and "timed out" in mail.last_error
        assert 29 <= (mail.due_at - mail.created_at).total_seconds() <= 31
