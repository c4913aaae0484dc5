"""After a delisting the status page tells how far it reached: when the exports were rewritten,
and what our own DNS (a real rbldnsd serving the export) answered when the worker asked."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse

from blocklist.exports import exports_refresh
from blocklist.ip import parse_network
from blocklist.services import entry_list
from portal_lib.dnsbl import dnsbl_lookup, parse_resolver, query_name
from requests_app import propagation, services
from requests_app.models import Propagation
from tests.conftest import LISTED_IP

ZONE = "bl.example.org"


def page(client, request) -> str:
    response = client.get(reverse("requests:status", args=[request.status_key]))
    return " ".join(response.content.decode().split())


@pytest.fixture
def export_dir(settings):
    # rbldnsd drops to its own user: the folder must be traversable and the files readable by all.
    folder = Path(tempfile.mkdtemp(prefix="delist-propagation-"))
    folder.chmod(0o755)
    settings.EXPORT_DIR = str(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rbldnsd(export_dir, settings):
    """A real rbldnsd serving the export in export_dir, rechecking it every second; the portal
    is set up to ask it."""
    binary = shutil.which("rbldnsd") or shutil.which("rbldnsd", path="/usr/sbin:/sbin")
    if not binary:
        pytest.skip("rbldnsd is not installed (run .ci/mail-server-tools.sh)")
    exports_refresh()  # rbldnsd refuses to start without its file
    port = _udp_port()
    process = subprocess.Popen(
        [
            binary,
            "-n",
            "-b",
            f"127.0.0.1/{port}",
            "-c",
            "1",
            f"{ZONE}:combined:{export_dir / 'blocklist.rbldnsd'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings.DNSBL_ZONE = ZONE
    settings.DNSBL_RESOLVER = f"127.0.0.1:{port}"
    settings.DNSBL_RESOLVER_ADDRESS = ("127.0.0.1", port)
    yield port
    process.terminate()
    process.wait(timeout=5)


def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def listed_in_dns(ip: str, port: int) -> bool | None:
    return dnsbl_lookup(ip, zone=ZONE, server=("127.0.0.1", port)).listed


def test_the_page_tells_when_the_exports_held_the_delisting(client, confirmed, export_dir):
    request = confirmed(LISTED_IP)
    services.sweep(now=request.effective_at)  # completes it; the sweep's own refresh writes the exports
    row = Propagation.objects.get(pk=request.pk)
    assert row.exported_at is None and row.next_check_at is not None
    assert "are being rewritten" in page(client, request)
    exports_refresh()
    propagation.propagations_check_due(now=row.next_check_at)
    row.refresh_from_db()
    assert row.exported_at is not None and row.next_check_at is None  # no DNS configured: done
    text = page(client, request)
    assert "were rewritten at" in text and "within its own interval" in text
    assert LISTED_IP not in (export_dir / "blocklist.txt").read_text()


def test_exports_older_than_the_delisting_do_not_count(confirmed, export_dir):
    request = confirmed(LISTED_IP)
    exports_refresh()  # before the delisting
    services.delisting_apply(request_id=request.pk, now=request.effective_at)
    row = propagation.propagation_check(request_id=request.pk, now=request.effective_at)
    assert row.exported_at is None and row.next_check_at is not None


def test_our_dns_is_asked_after_the_delisting(client, confirmed, rbldnsd):
    request = confirmed(LISTED_IP)
    until(lambda: listed_in_dns(LISTED_IP, rbldnsd) is True)
    services.delisting_apply(request_id=request.pk, now=request.effective_at)
    exports_refresh()
    until(lambda: listed_in_dns(LISTED_IP, rbldnsd) is False)  # rbldnsd reloaded the file
    assert propagation.propagations_check_due(now=request.effective_at + propagation.FIRST_LOOK) == 1
    row = Propagation.objects.get(pk=request.pk)
    assert row.dns_listed is False and row.dns_answer == "NXDOMAIN" and row.next_check_at is None
    assert "Our DNS no longer lists it (checked at" in page(client, request)


def test_a_stale_dns_answer_is_told_and_asked_again(client, confirmed, rbldnsd):
    request = confirmed(LISTED_IP)
    until(lambda: listed_in_dns(LISTED_IP, rbldnsd) is True)
    services.delisting_apply(request_id=request.pk, now=request.effective_at)
    # The marker says the exports hold it, but rbldnsd has not been given the new file yet.
    row = Propagation.objects.get(pk=request.pk)
    Propagation.objects.filter(pk=row.pk).update(exported_at=request.effective_at)
    row = propagation.propagation_check(request_id=request.pk, now=request.effective_at)
    assert row.dns_listed is True and row.dns_answer == "127.0.0.2" and row.next_check_at is not None
    assert "Our DNS still listed it when we asked at" in page(client, request)
    assert "and we ask again" in page(client, request)


def test_dns_still_listing_because_of_another_entry_is_final(client, confirmed, rbldnsd):
    request = confirmed(LISTED_IP)
    entry_list(parse_network("5.61.14.0/24"), actor="trap")
    services.delisting_apply(request_id=request.pk, now=request.effective_at)
    exports_refresh()
    row = propagation.propagation_check(request_id=request.pk, now=request.effective_at)
    assert row.dns_listed is True and row.next_check_at is None
    assert "because of the other entry" in page(client, request)


def test_a_dns_server_that_does_not_answer_is_told(client, confirmed, settings):
    settings.DNSBL_ZONE = ZONE
    settings.DNSBL_RESOLVER_ADDRESS = ("127.0.0.1", _udp_port())  # nothing listens there
    request = confirmed(LISTED_IP)
    services.delisting_apply(request_id=request.pk, now=request.effective_at)
    row = propagation.propagation_check(request_id=request.pk, now=request.effective_at)
    assert row.dns_listed is None and row.next_check_at is not None
    assert "Our DNS did not answer" in page(client, request)


def test_the_sweep_wakes_the_checks_that_are_due(confirmed, export_dir):
    request = confirmed(LISTED_IP)
    services.sweep(now=request.effective_at)  # completes it and rewrites the exports
    # Tasks run eagerly in tests: the next sweep's wake-up runs the check, on the clock.
    with time_machine.travel(request.effective_at + propagation.FIRST_LOOK, tick=False):
        services.sweep()
    assert Propagation.objects.get(pk=request.pk).exported_at is not None


def test_nothing_is_watched_without_exports_or_dns(client, confirmed):
    request = confirmed(LISTED_IP)
    services.sweep(now=request.effective_at)
    assert Propagation.objects.get(pk=request.pk).next_check_at is None
    assert "as they reload the list" in page(client, request)


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("127.0.0.1:53", ("127.0.0.1", 53)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
    ],
)
def test_the_resolver_setting_is_read_strictly(value, parsed):
    assert parse_resolver(value) == parsed


@pytest.mark.parametrize(
    "value", ["dns.example.org:53", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "1.2.3.4:x"]
)
def test_a_bad_resolver_setting_is_refused(value):
    with pytest.raises(ValueError):
        parse_resolver(value)


def test_query_names_are_what_mail_servers_ask():
    assert query_name("5.61.14.7", ZONE) == "7.14.61.5.bl.example.org."
    assert query_name("2a05:d018::1", ZONE).startswith("1.0.0.0.") and query_name(
        "2a05:d018::1", ZONE
    ).endswith("8.1.0.d.5.0.a.2.bl.example.org.")
