"""Asking a DNSBL zone about one address, as a mail server does: <reversed address>.<zone> A."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

# One query, one answer: a loopback rbldnsd answers in microseconds, and the worker must not
# hang on a server that is away.
TIMEOUT = 2.0


def parse_resolver(value: str) -> tuple[str, int]:
    """(address, port) of "127.0.0.1:53", "127.0.0.1", "[::1]:5353" or "::1"; ValueError else."""
    host, port = value, "53"
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not an address like 127.0.0.1:53 or [::1]:53")
        port = rest[1:] or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r} is not an address like 127.0.0.1:53 or [::1]:53") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} has no valid port (1 to 65535)")
    return str(address), int(port)


def query_name(ip: str, zone: str) -> str:
    """The name a mail server looks up: 7.14.61.5.<zone>, or the reversed nibbles for IPv6."""
    pointer = ipaddress.ip_address(ip).reverse_pointer
    return pointer.rsplit(".", 2)[0] + f".{zone.strip('.')}."


@dataclass(frozen=True)
class Answer:
    listed: bool | None  # None: no answer (timeout, server failure)
    text: str  # what the server said, for the record: "127.0.0.2", "NXDOMAIN", "timeout"


def dnsbl_lookup(ip: str, *, zone: str, server: tuple[str, int], timeout: float = TIMEOUT) -> Answer:
    """Whether the DNS server at `server` lists `ip` in `zone` now: an A record means listed."""
    query = dns.message.make_query(query_name(ip, zone), dns.rdatatype.A)
    try:
        response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
    except dns.exception.Timeout:
        return Answer(None, "timeout")
    except (OSError, dns.exception.DNSException) as e:
        return Answer(None, f"error: {e}"[:200])
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(False, "NXDOMAIN")
    if rcode != dns.rcode.NOERROR:
        return Answer(None, dns.rcode.to_text(rcode))
    addresses = [
        item.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for item in rrset
    ]
    return Answer(bool(addresses), ", ".join(addresses)[:200] or "NOERROR, no A record")
