"""Shared fixtures: listings made through the real services, and the mail a sender gets."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from blocklist.ip import parse_network
from blocklist.services import entry_list
from delist_portal.celery import app as celery_app
from requests_app import services
from requests_app.models import DelistRequest

# Public addresses (the portal refuses documentation and private ranges).
LISTED_IP = "5.61.14.7"
LISTED_RANGE = "37.120.8.0/24"
IN_RANGE_IP = "37.120.8.9"
LISTED_V6 = "2a05:d018:1:2::/64"
UNLISTED_IP = "81.2.69.160"
SENDER = "postmaster@mail.example.com"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate-limit counters live in the cache; each test starts with none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def one_instant():
    """The clock stands still for the test. Per-client limits count in django-ratelimit's fixed
    windows, whose edge falls somewhere in each period: two requests a few milliseconds apart
    could straddle it at any hour, and the second would be counted afresh."""
    with time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def listing(db):
    """Lists a network through the real service: listing("203.0.113.0/24", self_service=False)."""

    def make(network: str, **fields):
        fields.setdefault("actor", "admin")
        entry, _outcome = entry_list(parse_network(network), **fields)
        return entry

    return make


@pytest.fixture
def listed(listing):
    """The usual listings: one single address, one /24, one IPv6 /64."""
    return {
        "single": listing(LISTED_IP, reason="spam trap hits"),
        "range": listing(LISTED_RANGE, reason="snowshoe spam"),
        "v6": listing(LISTED_V6, reason="open relay"),
    }


@pytest.fixture
def confirmed(client, listed, mailoutbox, django_capture_on_commit_callbacks):
    """Submits and confirms a request for ip through the sender's pages; returns it."""

    def make(ip=IN_RANGE_IP, email=SENDER):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": email, "ip": ip})
        with django_capture_on_commit_callbacks(execute=True):
            press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
        return DelistRequest.objects.latest("created_at")

    return make


def confirmation_link(message: mail.EmailMessage) -> str:
    """The confirmation URL as the sender reads it in the text part."""
    match = re.search(r"^(https?://\S+/confirm/[A-Za-z0-9_.-]+)$", message.body, re.MULTILINE)
    assert match, f"no confirmation link in:\n{message.body}"
    return match.group(1)


def link_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def open_link(client, link: str, **extra) -> str:
    """Opens the emailed link as a browser does; returns the confirmation page it leads to."""
    response = client.get(link, **extra)
    assert response.status_code == 302, response.content.decode()[:500]
    return response["Location"]


def press_delist_button(client, link: str, **extra):
    """Opens the link, then posts the Delist IP button's form, as the page holds it."""
    confirm_page = open_link(client, link, **extra)
    request_id = parse_qs(urlsplit(confirm_page).query)["request"][0]
    return client.post(reverse("requests:confirm"), {"request": request_id}, **extra)


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def admin_post_data(response, **fields) -> dict:
    """What a browser posts back from an admin change page: the inlines' management forms too."""
    data = {}
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{key}": value for key, value in management.initial.items()})
    return {**data, **fields}


def free_port() -> int:
    """A loopback port nothing listens on (once this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox(Message):
    """What a real SMTP server on loopback received."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def handle_message(self, message):
        self.messages.append(message)


@pytest.fixture
def smtp_inbox():
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


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


@pytest.fixture(params=["one message", "ORM"])
def path(request, monkeypatch):
    """Which way request_submit writes on PostgreSQL: its own, or the portable one SQLite takes."""
    if request.param == "ORM":
        monkeypatch.setattr(services, "_submit_in_one_trip", services._submit)
    return request.param
