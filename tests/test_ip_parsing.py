"""Every address a user hands us is parsed strictly, with a message that says what is wrong."""

import ipaddress
import random

import pytest
from django.core.exceptions import ValidationError

from blocklist import ip
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
        ("5.61.014.7", "leading_zero"),  # ambiguous (octal to some parsers): named in the message
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


# --- the bisect table answers as ipaddress does ----------------------------------------

# Special-purpose blocks of the IANA registries, beside those ipaddress lists itself: a Python
# whose tables hold them (newer releases do) is checked at their edges too.
IANA_BLOCKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/31",
    "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001::/32", "2001:1::1/128", "2001:1::2/128", "2001:2::/48", "2001:3::/32", "2001:4:112::/48",
    "2001:10::/28", "2001:20::/28", "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48",
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]  # fmt: skip


ADDRESS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}
NETWORK = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}


def _as_ipaddress_says(address) -> bool:
    return address.is_global and not address.is_multicast


def _edge_networks(version: int) -> list:
    networks = [n for n in map(ipaddress.ip_network, IANA_BLOCKS) if n.version == version]
    networks += list(ip._special_networks(ADDRESS[version]))
    if version == 6:  # an IPv4-mapped address is answered for as its IPv4 address
        networks += [
            ipaddress.IPv6Network((0xFFFF_0000_0000 + int(n.network_address), 96 + n.prefixlen))
            for n in _edge_networks(4)
        ]
    return networks


@pytest.mark.parametrize("version", [4, 6])
def test_the_public_check_answers_as_ipaddress_at_every_edge_and_at_random(version):
    rng = random.Random(version)
    bits = 32 if version == 4 else 128
    values = {0, 1, (1 << bits) - 1}
    for network in _edge_networks(version):
        first, last = int(network.network_address), int(network.broadcast_address)
        values |= {v % (1 << bits) for v in (first - 1, first, first + 1, last - 1, last, last + 1)}
        values |= {first + rng.randrange(network.num_addresses) for _ in range(20)}
    values |= {rng.getrandbits(bits) for _ in range(20_000)}
    if version == 6:  # where the interesting IPv6 space is: global unicast and mapped IPv4
        values |= {(1 << 125) + rng.getrandbits(125) for _ in range(5_000)}
        values |= {0xFFFF_0000_0000 + rng.getrandbits(32) for _ in range(5_000)}
    for value in values:
        address = ADDRESS[version](value)
        assert ip.is_public_int(value, version) == _as_ipaddress_says(address), address


@pytest.mark.parametrize("version", [4, 6])
def test_a_network_is_public_when_both_its_ends_are_as_ipaddress_says(version):
    rng = random.Random(version)
    bits = 32 if version == 4 else 128
    starts = [int(n.network_address) for n in _edge_networks(version)]
    for _ in range(10_000):
        prefix = rng.randrange(bits + 1)
        value = rng.choice(starts) + rng.randrange(-4, 5) if rng.random() < 0.5 else rng.getrandbits(bits)
        network = NETWORK[version]((value % (1 << bits), prefix), strict=False)
        ends = (network.network_address, network.broadcast_address)
        expected = all(_as_ipaddress_says(end) for end in ends)
        assert ip.is_public_network(network) == expected, network


def _parse_network_as_before(text: str):
    """parse_network as it was before the bisect table: the oracle for the one we have."""
    value = (text or "").strip()
    if "/" not in value:
        if not value or "%" in value:
            raise ValidationError("required or zone", code="zone" if value else "required")
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            parts = value.split(".")
            zero = len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts)
            zero = zero and any(len(p) > 1 and p.startswith("0") for p in parts)
            raise ValidationError("invalid", code="leading_zero" if zero else "invalid") from None
        address = getattr(address, "ipv4_mapped", None) or address
        if not _as_ipaddress_says(address):
            raise ValidationError("non-global", code="non_global")
        return ipaddress.ip_network(address)
    if "%" in value:
        raise ValidationError("zone", code="zone")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError("invalid", code="invalid") from None
    if ipaddress.ip_address(value.split("/", 1)[0]) != network.network_address:
        raise ValidationError("host bits", code="host_bits")
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise ValidationError("mapped", code="mapped")
    if not (_as_ipaddress_says(network.network_address) and _as_ipaddress_says(network.broadcast_address)):
        raise ValidationError("non-global", code="non_global")
    return network


def _outcome(parse, text: str):
    try:
        return str(parse(text))
    except ValidationError as e:
        return e.code


def test_parse_network_gives_the_answers_it_gave_before_for_all_kinds_of_lines():
    rng = random.Random(3)
    edges = [n for version in (4, 6) for n in _edge_networks(version)]
    texts = [
        *("", " ", "/", "x/24", ":::", "1:2", "5.61.14.7:25", "5.61.14.7 # x", "5.61.14.256", "5.61.014.7"),
        *("5.61.14.0/", "5.61.14.0/24/", "5.61.14.0/255.255.255.0", "5.61.14.7/0.0.0.255", " 37.120.8.0/24 "),
        *("fe80::1%eth0", "fe80::/10%eth0", "::ffff:10.0.0.1", "::ffff:5.61.14.7", "::ffff:5.61.14.0/120"),
        *("::ffff:0:0/95", "::fffe:0:0/95", "0.0.0.0/0", "::/0", "2a05:d018::/32", "2A05:D018::1"),
    ]
    for _ in range(3_000):
        network = rng.choice(edges)
        bits = network.max_prefixlen
        address = ADDRESS[network.version](
            (int(network.network_address) + rng.randrange(-2, 3)) % (1 << bits)
        )
        prefix = rng.choice([network.prefixlen, bits, rng.randrange(bits + 1)])
        texts += [
            str(address),
            f"{address}/{prefix}",
            str(NETWORK[network.version]((address, prefix), strict=False)),
        ]
    for _ in range(2_000):
        v4 = rng.random() < 0.7
        address = ADDRESS[4](rng.getrandbits(32)) if v4 else ADDRESS[6]((1 << 125) + rng.getrandbits(125))
        texts += [str(address), f"{address}/{rng.randrange(address.max_prefixlen + 1)}"]
    for text in texts:
        assert _outcome(parse_network, text) == _outcome(_parse_network_as_before, text), text
