"""Strict parsing of the addresses and networks that users and files hand us.

Everything that reaches the database went through here: one spelling per address,
IPv4-mapped IPv6 unwrapped, and nothing that cannot be a public mail server.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


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
        address = _unwrap(ipaddress.ip_address(value))
    except ValueError:
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


def parse_network(text: str) -> IPNetwork:
    """An IP (meaning /32 or /128) or a CIDR network with no host bits set."""
    value = (text or "").strip()
    if "/" not in value:
        address = parse_ip(value)
        return ipaddress.ip_network(address)
    if "%" in value:
        raise ValidationError(_("Enter the network without a zone id."), code="zone")
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
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise ValidationError(_("Write IPv4 networks in IPv4 notation."), code="mapped")
    if not (_is_public(network.network_address) and _is_public(network.broadcast_address)):
        raise ValidationError(
            _("%(value)s is not a public network: it cannot be on our blocklist."),
            code="non_global",
            params={"value": network},
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
