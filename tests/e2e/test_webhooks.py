"""Webhooks end to end, against real gunicorn, Celery worker and beat, Redis and PostgreSQL: an
endpoint and a listing made in the admin, a sender's delisting over HTTP, and a receiver that is
down for a while and then gets every event, signed, once."""

from __future__ import annotations

import re
import time

import psycopg2
import pytest
import requests

from tests.e2e.conftest import wait_for
from tests.e2e.test_delist_flow import csrf_token, text_part
from tests.webhook_receiver import Receiver, verify

pytestmark = pytest.mark.e2e

IP = "5.61.14.7"
SENDER = "postmaster@mail.example.com"
SECRET = "e2e-webhook-secret"
PASSWORD = "a-desk-password-for-the-e2e-test"


@pytest.fixture
def portal_env(portal_env):
    # The receiver is on loopback: a lab's setting.
    return {**portal_env, "WEBHOOK_ALLOW_PRIVATE": "true"}


def admin_session(portal) -> requests.Session:
    portal.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    portal.manage("createsuperuser", "--no-input", "--username", "desk", "--email", "desk@example.org")
    desk = requests.Session()
    login = desk.get(f"{portal.base_url}/admin/login/", timeout=5)
    desk.post(
        f"{portal.base_url}/admin/login/?next=/admin/",
        data={"username": "desk", "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(login.text)},
        timeout=10,
    ).raise_for_status()
    return desk


def admin_add(desk: requests.Session, portal, path: str, data: dict) -> None:
    url = f"{portal.base_url}/admin/{path}/add/"
    page = desk.get(url, timeout=5)
    response = desk.post(
        url, data={**data, "csrfmiddlewaretoken": csrf_token(page.text)}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302, response.text[-3000:]


def deliveries(database_url: str) -> list[tuple[str, str, int]]:
    with psycopg2.connect(database_url) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT e.type, d.status, d.attempts FROM webhooks_delivery d "
            "JOIN webhooks_event e ON e.id = d.event_id ORDER BY d.id"
        )
        return cursor.fetchall()


def make_retries_due(database_url: str) -> None:
    """What waiting out the backoff would do, without the wait."""
    with psycopg2.connect(database_url) as db, db.cursor() as cursor:
        cursor.execute("UPDATE webhooks_delivery SET due_at = now() WHERE status = 'pending'")


def delist_as_a_sender(portal, smtp_inbox) -> None:
    sender = requests.Session()
    start = sender.get(f"{portal.base_url}/", params={"ip": IP}, timeout=5)
    submitted = sender.post(
        f"{portal.base_url}/request",
        data={"email": SENDER, "ip": IP, "csrfmiddlewaretoken": csrf_token(start.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert submitted.status_code == 302, submitted.text
    message = wait_for(lambda: smtp_inbox.messages and smtp_inbox.messages[0], timeout=30, what="the mail")
    link = re.search(r"^(http://\S+/confirm/[A-Za-z0-9_.-]+)\s*$", text_part(message), re.MULTILINE).group(1)
    page = sender.get(link, timeout=5)
    request_id = re.search(r'name="request" value="(\d+)"', page.text).group(1)
    confirmed = sender.post(
        f"{portal.base_url}/confirm/",
        data={"csrfmiddlewaretoken": csrf_token(page.text), "request": request_id},
        allow_redirects=False,
        timeout=10,
    )
    assert confirmed.status_code == 302


def test_webhooks_reach_a_receiver_that_was_down_signed_and_once_each(portal, smtp_inbox):
    database_url = portal.env["DATABASE_URL"]
    receiver = Receiver()  # not started: the receiver is down
    desk = admin_session(portal)
    admin_add(
        desk,
        portal,
        "webhooks/endpoint",
        {
            "name": "abuse desk tooling",
            "url": receiver.url(),
            "secret": SECRET,
            "events": ["entry.listed", "entry.delisted", "request.completed", "request.needs_review"],
            "active": "on",
        },
    )
    admin_add(
        desk,
        portal,
        "blocklist/entry",
        {"network": IP, "code": "5.7.606", "reason": "spam trap hits", "source": "e2e", "self_service": "on"},
    )
    delist_as_a_sender(portal, smtp_inbox)

    # The worker tried each event while nothing listened, and backs off.
    wait_for(
        lambda: (
            sorted(t for t, _s, attempts in deliveries(database_url) if attempts >= 1)
            == ["entry.delisted", "entry.listed", "request.completed"]
        ),
        timeout=60,
        what="a failed attempt of each event",
    )
    assert all(status == "pending" for _t, status, _a in deliveries(database_url))

    receiver.start()
    try:
        make_retries_due(database_url)
        wait_for(
            lambda: all(status == "delivered" for _t, status, _a in deliveries(database_url)),
            timeout=60,
            what="every delivery to succeed",
        )
        # More sweeps go by: nothing is sent twice.
        make_retries_due(database_url)
        time.sleep(3)
        posts = receiver.posts()
    finally:
        receiver.stop()

    payloads = [verify(SECRET, post, now=time.time()) for post in posts]
    assert sorted(p["type"] for p in payloads) == ["entry.delisted", "entry.listed", "request.completed"]
    assert len({p["id"] for p in payloads}) == 3
    by_type = {p["type"]: p["data"] for p in payloads}
    assert by_type["entry.listed"]["network"] == f"{IP}/32"
    assert by_type["entry.listed"]["reason"] == "spam trap hits"
    assert by_type["entry.delisted"]["id"] == by_type["entry.listed"]["id"]
    assert by_type["request.completed"]["ip"] == IP
    assert by_type["request.completed"]["networks"] == [f"{IP}/32"]
