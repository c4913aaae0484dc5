"""A sender's whole delisting, against real gunicorn, Celery worker and beat, Redis,
PostgreSQL and an SMTP server: submit over HTTP, follow the mailed link, press the
button, and watch the IP leave the list once the propagation delay has passed."""

import re
import time

import pytest
import requests

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

IP = "5.61.14.7"
SENDER = "postmaster@mail.example.com"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def text_part(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


def lookup(portal) -> dict:
    return requests.get(f"{portal.base_url}/api/v1/ip/{IP}", timeout=5).json()


def test_a_sender_delists_an_ip_end_to_end(portal, smtp_inbox, tmp_path):
    listing = tmp_path / "listing.txt"
    listing.write_text(f"# e2e\n{IP}\n")
    assert "added 1" in portal.manage("import_blocklist", str(listing))
    assert lookup(portal)["listed"] is True

    sender = requests.Session()
    start = sender.get(f"{portal.base_url}/", params={"ip": IP}, timeout=5)
    assert start.status_code == 200 and f'value="{IP}"' in start.text
    submitted = sender.post(
        f"{portal.base_url}/request",
        data={"email": SENDER, "ip": IP, "csrfmiddlewaretoken": csrf_token(start.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert submitted.status_code == 302, submitted.text
    status_url = portal.base_url + submitted.headers["Location"]
    assert "Check your inbox" in sender.get(status_url, timeout=5).text

    # The worker sends the confirmation through the real SMTP server.
    message = wait_for(
        lambda: smtp_inbox.messages and smtp_inbox.messages[0], timeout=30, what="the confirmation mail"
    )
    assert message["To"] == SENDER
    link = re.search(r"^(http://\S+/confirm/[A-Za-z0-9_.-]+)\s*$", text_part(message), re.MULTILINE).group(1)

    # Opening the link twice (a mail scanner, then the sender) changes nothing.
    for _ in range(2):
        page = sender.get(link, timeout=5)
        assert page.status_code == 200 and "Delist IP" in page.text and IP in page.text
        assert page.url.startswith(f"{portal.base_url}/confirm/?request=")  # the token left the address bar
    assert "waiting for confirmation" in sender.get(status_url, timeout=5).text
    assert lookup(portal)["listed"] is True

    request_id = re.search(r'name="request" value="(\d+)"', page.text).group(1)
    confirmed = sender.post(
        f"{portal.base_url}/confirm/",
        data={"csrfmiddlewaretoken": csrf_token(page.text), "request": request_id},
        allow_redirects=False,
        timeout=10,
    )
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == submitted.headers["Location"]
    approved_at = time.monotonic()
    assert "Scheduled for removal" in sender.get(status_url, timeout=5).text
    assert lookup(portal)["listed"] is True  # not before the 2 s delay

    # Beat sweeps every second; the delisting lands once the delay has passed.
    wait_for(lambda: lookup(portal)["listed"] is False, timeout=30, what="the IP to be delisted")
    assert time.monotonic() - approved_at >= 1.5
    status = sender.get(status_url, timeout=5).text
    assert "Removed from the blocklist" in status and "delisted" in status
    probe = "from blocklist.ip import parse_ip; from blocklist.services import entries_covering; "
    probe += f"print(entries_covering(parse_ip('{IP}')).count())"
    assert portal.manage("shell", "--no-imports", "-c", probe).strip() == "0"

    done = wait_for(
        lambda: len(smtp_inbox.messages) >= 2 and smtp_inbox.messages[1],
        timeout=30,
        what="the completion mail",
    )
    assert "has been removed" in done["Subject"]
    # The used link is dead now.
    assert "already used" in requests.get(link, timeout=5).text
    # gunicorn's access log and Django's warnings never show the token.
    token = link.rsplit("/", 1)[1]
    logs = "".join(p.read_text(errors="replace") for p in portal.workdir.glob("*.log"))
    assert "/confirm/[redacted]" in logs and token not in logs and token.split(".")[1] not in logs
