"""Strict parsing of the addresses and networks that users and files hand us.

Everything that reaches the database went through here: one spelling per address,
IPv4-mapped IPv6 unwrapped, and nothing that cannot be a public mail server.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Iterator
from itertools import pairwise

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_public_slow(address: IPAddress) -> bool:
    """The rule itself: what ipaddress calls global, less multicast. _NON_PUBLIC is built from it."""
    return address.is_global and not address.is_multicast


def _special_networks(family: type[IPAddress]) -> Iterator[IPNetwork]:
    """Every network (or address) that ipaddress's own special-purpose tables name for a family.

    The tables are private to ipaddress, but they are where its rules live, and the rules differ
    between Python releases (3.11.10 changed them): reading them keeps our answers ipaddress's.
    """
    for value in vars(family._constants).values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
                yield item
            elif isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
                yield ipaddress.ip_network(item)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _non_public_ranges(family: type[IPAddress]) -> tuple[list[int], list[int]]:
    """(starts, ends) of the sorted, disjoint ranges of addresses that _is_public_slow refuses.

    Between two consecutive edges of the special networks no table changes its answer, so the
    rule asked once per piece answers for the whole piece. IPv6 also holds the IPv4 edges inside
    ::ffff:0:0/96, since ipaddress answers for a mapped address as for its IPv4 address.
    """
    bits = family(0).max_prefixlen
    networks = list(_special_networks(family))
    if family is ipaddress.IPv6Address:
        offset = int(_MAPPED.network_address)
        networks.append(_MAPPED)
        networks += [
            ipaddress.IPv6Network((offset + int(n.network_address), 96 + n.prefixlen))
            for n in _special_networks(ipaddress.IPv4Address)
        ]
    edges = {0, 1 << bits}
    for network in networks:
        edges |= {int(network.network_address), int(network.broadcast_address) + 1}
    starts: list[int] = []
    ends: list[int] = []
    for low, high in pairwise(sorted(edges)):
        if _is_public_slow(family(low)):
            continue
        if ends and ends[-1] == low - 1:
            ends[-1] = high - 1
        else:
            starts.append(low)
            ends.append(high - 1)
    return starts, ends


_NON_PUBLIC = {4: _non_public_ranges(ipaddress.IPv4Address), 6: _non_public_ranges(ipaddress.IPv6Address)}


def is_public_int(value: int, version: int) -> bool:
    """Whether the address with this integer value is public: one bisect in a table of a few dozen ranges.

    The same answer as `is_global and not is_multicast` (tests/test_ip_parsing.py compares them),
    at a fraction of the cost: those two properties test the address against each table in turn.
    """
    starts, ends = _NON_PUBLIC[version]
    i = bisect_right(starts, value) - 1
    return i < 0 or value > ends[i]


def _is_public(address: IPAddress) -> bool:
    return is_public_int(int(address), address.version)


def is_public_network(network: IPNetwork) -> bool:
    """What parse_network asks of a network: its first and its last address are both public."""
    version, first = network.version, int(network.network_address)
    last = first | ((1 << (network.max_prefixlen - network.prefixlen)) - 1)
    return is_public_int(first, version) and is_public_int(last, version)


def parse_ip(text: str) -> IPAddress:
    """One public IP address, or a ValidationError saying why not."""
    value = (text or "").strip()
    if not value:
        raise ValidationError(_("Enter an IP address."), code="required")
    if "%" in value:
        raise ValidationError(_("Enter the address without a zone id (the part after %)."), code="zone")
    if "/" in value:
        raise ValidationError(_("Enter a single IP address, not a network."), code="network")
    try:
        address = _unwrap((ipaddress.IPv6Address if ":" in value else ipaddress.IPv4Address)(value))
    except ValueError:
        _refuse_leading_zero(value)
        raise ValidationError(
            _("“%(value)s” is not a valid IPv4 or IPv6 address."),
            code="invalid",
            params={"value": value[:64]},
        ) from None
    if not _is_public(address):
        raise ValidationError(
            _("%(value)s is not a public address: it cannot be on our blocklist."),
            code="non_global",
            params={"value": address},
        )
    return address


_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)


def _refuse_leading_zero(value: str) -> None:
    """Names the leading zero of an IPv4 address such as 5.61.14.07.

    Some parsers (inet_aton) read 07 as octal, and 010 would be 8: which address was meant
    cannot be told, so it is refused, but with a message that says what to change.
    """
    if not _DOTTED_QUAD.fullmatch(value):
        return
    for part in value.split("."):
        if len(part) > 1 and part.startswith("0"):
            raise ValidationError(
                _(
                    "“%(value)s” has a leading zero in “%(part)s”: write each number of the "
                    "address without leading zeros."
                ),
                code="leading_zero",
                params={"value": value, "part": part},
            )


def parse_network(text: str) -> IPNetwork:
    """An IP (meaning /32 or /128) or a CIDR network with no host bits set."""
    value = (text or "").strip()
    if "/" not in value:
        address = parse_ip(value)
        # From the integer: no second parse of the text.
        return (ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network)(int(address))
    if "%" in value:
        raise ValidationError(_("Enter the network without a zone id."), code="zone")
    try:
        # Strict, so a valid line costs one parse; the family told by its colon, so an IPv6 one
        # is not first tried (and refused) as IPv4, as ip_network would.
        network = (ipaddress.IPv6Network if ":" in value else ipaddress.IPv4Network)(value)
    except ValueError:
        network = _loose_network(value)
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise ValidationError(_("Write IPv4 networks in IPv4 notation."), code="mapped")
    if not is_public_network(network):
        raise ValidationError(
            _("%(value)s is not a public network: it cannot be on our blocklist."),
            code="non_global",
            params={"value": network},
        )
    return network


def _loose_network(value: str) -> IPNetwork:
    """The network a strict parse refused: why it is invalid, or which network was meant."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(
            _("“%(value)s” is not a valid network."), code="invalid", params={"value": value[:64]}
        ) from None
    if ipaddress.ip_address(value.split("/", 1)[0]) != network.network_address:
        raise ValidationError(
            _("%(value)s has host bits set; did you mean %(network)s?"),
            code="host_bits",
            params={"value": value[:64], "network": network},
        )
    return network


def network_start(network: IPNetwork) -> str:
    """The network's first address as fixed-width hex: sortable and indexable anywhere.

    IPv4 is 8 hex digits and IPv6 32, so the two families never collide.
    """
    width = 8 if network.version == 4 else 32
    return format(int(network.network_address), f"0{width}x")


def covering_starts(address: IPAddress) -> list[tuple[int, str]]:
    """(prefix length, network start) of every network that can contain the address."""
    bits = address.max_prefixlen
    width = bits // 4
    value = int(address)
    starts = []
    for prefix in range(bits + 1):
        mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
        starts.append((prefix, format(value & mask, f"0{width}x")))
    return starts
