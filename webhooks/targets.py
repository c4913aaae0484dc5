"""Where a webhook may go: http or https, to public addresses only.

The host is resolved once, every address it resolves to is checked, and the connection is made to
a checked address (webhooks/http.py), so a DNS answer that changes between the check and the
connection (rebinding) cannot point the worker at the portal's own network.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """A URL the portal will not send to; the message says why, for the admin and the log."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as the URL names it: the Host header and the TLS server name
    port: int
    path: str  # with the query
    addresses: tuple[str, ...]  # checked, in the resolver's order


def _refusal(address: IPAddress) -> str | None:
    """Why the address is no place for a webhook, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind, test in (
        (_("unspecified"), address.is_unspecified),
        (_("loopback"), address.is_loopback),
        (_("link-local"), address.is_link_local),
        (_("multicast"), address.is_multicast),
        (_("reserved"), address.is_reserved),
        (_("private"), address.is_private),
        (_("not global"), not address.is_global),
    ):
        if test:
            return kind
    return None


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http or https URL, or TargetRefused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise TargetRefused(_("This is not a valid URL: %(error)s.") % {"error": e}) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused(_("Only http:// and https:// URLs can receive webhooks."))
    if not parts.hostname:
        raise TargetRefused(_("The URL names no host."))
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(_("Put no user name or password in the URL: the secret signs every event."))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(url: str) -> Target:
    """The URL's target with every address its host resolves to checked, or TargetRefused.

    WEBHOOK_ALLOW_PRIVATE lets loopback and private targets through (labs, tests).
    """
    scheme, host, port, path = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise TargetRefused(
            _("The host %(host)s does not resolve: %(error)s.") % {"host": host, "error": e}
        ) from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise TargetRefused(_("The host %(host)s does not resolve.") % {"host": host})
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        for text in addresses:
            # Scoped IPv6 answers carry a zone ("fe80::1%eth0"): link-local either way.
            kind = _refusal(ipaddress.ip_address(text.split("%", 1)[0]))
            if kind:
                raise TargetRefused(
                    _("%(host)s resolves to %(address)s (%(kind)s): webhooks only go to public addresses.")
                    % {"host": host, "address": text, "kind": kind}
                )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
