"""Webhooks go to public http(s) targets only: checked when an endpoint is saved and again at
each delivery, every resolved address, connected to the address that was checked."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from django.urls import reverse

from blocklist.ip import parse_network
from blocklist.services import entry_list
from tests.conftest import LISTED_IP
from tests.webhook_receiver import Receiver
from webhooks import http, outbox
from webhooks.models import Delivery, Endpoint, EventType
from webhooks.targets import Target, TargetRefused, resolve

ALL_EVENTS = [t.value for t in EventType]


@pytest.fixture
def receiver():
    instance = Receiver().start()
    yield instance
    instance.stop()


@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://127.1.2.3/", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("https://192.168.1.10/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "not global"),  # carrier-grade NAT
        ("http://localhost:8000/hook", "loopback"),  # a name: every address it resolves to
    ],
)
def test_non_public_targets_are_refused(settings, url, kind):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(TargetRefused, match=rf"\({kind}\): webhooks only go to public addresses"):
        resolve(url)


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://81.2.69.160/", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://81.2.69.160/", "Only http:// and https://"),
        ("http:///hook", "names no host"),
        ("http://user:pass@81.2.69.160/", "no user name or password"),
        ("http://81.2.69.160:99999/", "not a valid URL"),
        ("http://does-not-exist.invalid/", "does not resolve"),
    ],
)
def test_other_bad_urls_are_refused_with_a_reason(settings, url, why):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # these are wrong whatever the flag says
    with pytest.raises(TargetRefused, match=why):
        resolve(url)


def test_a_public_address_is_a_target(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    target = resolve("https://81.2.69.160/hooks/delist?x=1")
    assert target == Target(
        scheme="https", host="81.2.69.160", port=443, path="/hooks/delist?x=1", addresses=("81.2.69.160",)
    )


def test_the_flag_lets_loopback_through_for_labs_and_tests(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert "127.0.0.1" in resolve("http://localhost:8000/").addresses


def test_the_admin_refuses_to_save_a_private_endpoint(admin_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    add = reverse("admin:webhooks_endpoint_add")
    form = {"name": "lab", "secret": "s3cret", "events": ["entry.listed"], "active": "on"}
    for url in ("http://127.0.0.1:9000/hook", "http://[::1]/", "http://10.0.0.8/", "http://localhost/"):
        response = admin_client.post(add, {**form, "url": url})
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "webhooks only go to public addresses" in errors["url"][0]
    response = admin_client.post(add, {**form, "url": "ftp://81.2.69.160/"})
    assert "Only http:// and https://" in response.context["adminform"].form.errors["url"][0]
    assert not Endpoint.objects.exists()

    # No event type chosen: an endpoint that would get nothing is a mistake.
    response = admin_client.post(add, {**form, "url": "https://81.2.69.160/", "events": []})
    assert "events" in response.context["adminform"].form.errors
    assert admin_client.post(add, {**form, "url": "https://81.2.69.160/hook"}).status_code == 302
    assert Endpoint.objects.get().events == ["entry.listed"]

    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert (
        admin_client.post(add, {**form, "name": "lab 2", "url": "http://127.0.0.1:9000/hook"}).status_code
        == 302
    )


def test_a_target_that_became_private_is_refused_at_delivery(db, settings, receiver):
    # Saved while the lab allowed it; the flag is off by the time the event goes out.
    settings.WEBHOOK_ALLOW_PRIVATE = True
    Endpoint.objects.create(name="lab", url=receiver.url(), events=ALL_EVENTS)
    entry_list(parse_network(LISTED_IP), actor="admin")
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert outbox.deliveries_send_due() == 0
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING and delivery.last_status_code is None
    assert delivery.last_error.startswith("refused: 127.0.0.1 resolves to 127.0.0.1 (loopback)")
    assert receiver.received == []


def test_the_connection_goes_to_the_checked_address_without_resolving_again(receiver):
    # A host that resolves nowhere: only the address already checked can be used, so a DNS
    # answer that changes after the check (rebinding) never reaches the connection.
    target = Target(
        scheme="http", host="rebind.invalid", port=receiver.port, path="/hook", addresses=("127.0.0.1",)
    )
    assert http.post(target, b"{}", {"Content-Type": "application/json"}) == 200
    [received] = receiver.posts()
    assert received.headers["Host"] == f"rebind.invalid:{receiver.port}"


def test_every_address_is_tried_and_none_twice(receiver):
    # The first address refuses the connection; the second, also checked, takes the event.
    target = Target(
        scheme="http",
        host="twice.invalid",
        port=receiver.port,
        path="/hook",
        addresses=("127.0.0.2", "127.0.0.1"),
    )
    assert http.post(target, b"{}", {}) == 200
    assert len(receiver.posts()) == 1


@pytest.mark.parametrize("value, allowed", [("", False), ("false", False), ("true", True)])
def test_private_targets_stay_refused_unless_the_flag_says_true(value, allowed):
    from tests.test_configuration import start

    code = "import django; django.setup(); from django.conf import settings; "
    code += "print(settings.WEBHOOK_ALLOW_PRIVATE)"
    result = start(code, WEBHOOK_ALLOW_PRIVATE=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(allowed)


def test_a_malformed_flag_stops_start_up():
    from tests.test_configuration import start

    result = start("import django; django.setup()", WEBHOOK_ALLOW_PRIVATE="yes")
    assert result.returncode != 0
    assert "WEBHOOK_ALLOW_PRIVATE must be 'true' or 'false'" in result.stderr


@pytest.fixture
def https_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on loopback whose certificate names webhook.test, trusted as a CA."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=webhook.test",
        ]
        + ["-addext", "subjectAltName=DNS:webhook.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the default context trusts
    instance = Receiver().start(tls=(str(cert), str(key)))
    yield instance
    instance.stop()


def test_https_checks_the_certificate_against_the_host_the_url_names(https_receiver):
    def target(host: str) -> Target:
        return Target(
            scheme="https", host=host, port=https_receiver.port, path="/hook", addresses=("127.0.0.1",)
        )

    # Connected to the checked address, verified for the name: the certificate says webhook.test.
    assert http.post(target("webhook.test"), b"{}", {}) == 200
    assert https_receiver.posts()[0].headers["Host"] == f"webhook.test:{https_receiver.port}"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        http.post(target("elsewhere.test"), b"{}", {})
    assert len(https_receiver.posts()) == 1
