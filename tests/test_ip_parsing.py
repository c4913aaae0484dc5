"""Every address a user hands us is parsed strictly, with a message that says what is wrong."""

import ipaddress

import pytest
from django.core.exceptions import ValidationError

from blocklist.ip import covering_starts, network_start, parse_ip, parse_network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.61.14.7", "5.61.14.7"),
        ("  5.61.14.7 ", "5.61.14.7"),
        ("::ffff:5.61.14.7", "5.61.14.7"),  # IPv4-mapped IPv6 is the IPv4 address
        ("2A05:D018:0001:0002::0001", "2a05:d018:1:2::1"),
    ],
)
def test_it_normalises_public_addresses(text, expected):
    assert str(parse_ip(text)) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "required"),
        ("5.61.014.7", "invalid"),  # leading zeros are ambiguous (octal to some parsers)
        ("5.61.14", "invalid"),
        ("not an ip", "invalid"),
        ("fe80::1%eth0", "zone"),
        ("5.61.14.0/24", "network"),
        ("10.0.0.1", "non_global"),
        ("192.168.1.1", "non_global"),
        ("127.0.0.1", "non_global"),
        ("100.64.0.1", "non_global"),
        ("203.0.113.7", "non_global"),  # documentation range
        ("2001:db8::1", "non_global"),
        ("::1", "non_global"),
        ("::ffff:10.0.0.1", "non_global"),
        ("224.0.1.1", "non_global"),
    ],
)
def test_it_refuses_what_cannot_be_a_public_mail_server(text, code):
    with pytest.raises(ValidationError) as raised:
        parse_ip(text)
    assert raised.value.code == code
    assert raised.value.messages[0]


def test_a_bare_address_is_a_single_address_network():
    assert str(parse_network("5.61.14.7")) == "5.61.14.7/32"
    assert str(parse_network("2a05:d018::1")) == "2a05:d018::1/128"


def test_it_refuses_networks_with_host_bits_and_names_the_network_meant():
    with pytest.raises(ValidationError) as raised:
        parse_network("37.120.8.9/24")
    assert "37.120.8.0/24" in raised.value.messages[0]


@pytest.mark.parametrize("text", ["10.0.0.0/8", "0.0.0.0/0", "37.120.8.0/33", "::ffff:5.61.14.0/120"])
def test_it_refuses_bad_or_non_global_networks(text):
    with pytest.raises(ValidationError):
        parse_network(text)


def test_coverage_probes_are_the_address_masked_to_every_prefix_length():
    probes = dict(covering_starts(ipaddress.ip_address("37.120.8.9")))
    assert len(probes) == 33
    assert probes[32] == network_start(ipaddress.ip_network("37.120.8.9/32"))
    assert probes[24] == network_start(ipaddress.ip_network("37.120.8.0/24"))
    assert probes[0] == "00000000"
    assert len(dict(covering_starts(ipaddress.ip_address("2a05:d018::1")))) == 129
