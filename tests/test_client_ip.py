"""Who the client is: X-Forwarded-For is parsed like any other input, and only the hop our own
proxy wrote counts."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from portal_lib.client_ip import client_ip, parse_address
from requests_app.models import DelistRequest
from tests.conftest import LISTED_IP, SENDER


def ask(settings, forwarded=None, remote="10.9.8.7", proxies=1) -> str:
    settings.TRUSTED_PROXY_COUNT = proxies
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **meta))


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("81.2.69.160", "81.2.69.160"),
        (" 81.2.69.160 ", "81.2.69.160"),
        ("81.2.69.160:5555", "81.2.69.160"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::ffff:81.2.69.160", "81.2.69.160"),
        ("garbage", None),
        ("unknown", None),
        ("", None),
        ("300.1.1.1", None),
        ("1.2.3.4:99999", None),
        ("1.2.3.4:0", None),
        ("[1.2.3.4]:80", None),
        ("fe80::1%eth0", None),
        ("01.2.3.4", None),
        ("١.٢.٣.٤", None),
        ("1.2.3.4\x00", None),
        ("1.2.3.4 5.6.7.8", None),
        ("x" * 1000, None),
        ("_", None),
    ],
)
def test_a_forwarded_value_is_an_address_or_nothing(value, parsed):
    assert parse_address(value) == parsed


@pytest.mark.parametrize("junk", ["garbage", "unknown", "", "300.1.1.1", "1.2.3.4:99999", "\x00", "a, b, c"])
def test_a_junk_forwarded_header_falls_back_to_remote_addr(settings, junk):
    assert ask(settings, junk) == "10.9.8.7"


def test_the_hop_our_proxy_wrote_counts_not_what_the_client_wrote(settings):
    assert ask(settings, "1.1.1.1, 81.2.69.160") == "81.2.69.160"
    assert ask(settings, "1.1.1.1, 81.2.69.160:4711") == "81.2.69.160"
    assert ask(settings, "6.6.6.6, 81.2.69.160, 10.0.0.1", proxies=2) == "81.2.69.160"
    assert ask(settings, "81.2.69.160", proxies=2) == "10.9.8.7"  # fewer hops than proxies


def test_without_trusted_proxies_the_header_is_ignored(settings):
    assert ask(settings, "81.2.69.160", proxies=0) == "10.9.8.7"


@pytest.mark.parametrize(
    "forwarded",
    ["garbage", "unknown", "", "300.1.1.1", "1.2.3.4:5555", "[2001:db8::1]:443", "\x00x", "'; --"],
)
def test_a_submission_behind_the_proxy_never_fails_on_the_header(client, listed, settings, forwarded):
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.post(
        reverse("requests:submit"),
        {"email": SENDER, "ip": LISTED_IP},
        HTTP_X_FORWARDED_FOR=forwarded,
        REMOTE_ADDR="10.9.8.7",
    )
    assert response.status_code == 302
    recorded = DelistRequest.objects.get().client_ip
    assert recorded in {"10.9.8.7", "1.2.3.4", "2001:db8::1"}
