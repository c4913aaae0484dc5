"""Who is asking: the address that rate limits, the login lockout and records use.

`X-Forwarded-For` is input like any other: only the hop our own proxy wrote is read, and only
when it parses as an address. Anything else falls back to `REMOTE_ADDR`.
"""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings
from django.http import HttpRequest

# "1.2.3.4:5555" (IPv4 with a port) and "[2001:db8::1]:443" (bracketed IPv6, port optional),
# as some proxies write them.
_WITH_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+))(?::(?P<port>[0-9]{1,5}))?$")


def parse_address(value: str) -> str | None:
    """The address a header value or REMOTE_ADDR names, normalized; None when it names none."""
    value = value.strip()
    if not value or len(value) > 64 or not value.isascii():
        return None
    match = _WITH_PORT.match(value)
    if match:
        if match["port"] is not None and not 0 < int(match["port"]) < 65536:
            return None
        value = match["v6"] or match["v4"]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if match and match["v6"] and address.version != 6:  # "[1.2.3.4]" is no way to write IPv4
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return None
        address = address.ipv4_mapped or address
    return str(address)


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with N trusted proxies the Nth X-Forwarded-For value from the right.

    Values further left were written by the client and can say anything. "" when the
    connection has no address (a Unix socket with no proxy configured).
    """
    remote = parse_address(request.META.get("REMOTE_ADDR", "")) or ""
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(hops) < count:
        return remote
    return parse_address(hops[-count]) or remote


def ratelimit_ip(request: HttpRequest) -> str:
    """For django-ratelimit's `key="ip"`, which then buckets IPv6 clients per RATELIMIT_IPV6_MASK."""
    # Clients without an address share one bucket rather than escaping the limit.
    return client_ip(request) or "0.0.0.0"
