"""The one IP address in what a sender pasted from a bounce.

Senders paste what the rejection shows them: `[5.61.14.7]`, `5.61.14.7/32`, the address in
quotes, or the whole `550 5.7.606 ... banned sending IP [5.61.14.7]; ... ?ip=5.61.14.7 ...` line.
This only finds where the address is; parse_ip still reads it, strictly, so no spelling gets in
that the bare field would refuse. Pure: no database, no settings, no clock.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from blocklist.ip import IPAddress, parse_ip

# A rejection line is under 512 characters (RFC 5321); a few lines of a bounce fit too.
MAX_PASTE = 1000

_QUOTES = "\"'`“”‘’«»„"
_BRACKETS = {"[": "]", "(": ")", "<": ">"}
# Characters that never occur in an address: a text holding one is a paste to search.
_PASTE_MARK = re.compile(r"[\s\[\]()<>=?;,\"'`“”‘’«»„]")
# A dotted quad not glued to a word, a longer number or a hostname ("7.14.61.5.bl.example").
_IPV4 = re.compile(
    r"(?<![0-9A-Za-z.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,3})?(?![0-9A-Za-z/]|\.[0-9A-Za-z])",
    re.ASCII,
)
# A run of hex digits, colons and dots holding two colons, with a zone id or prefix if any.
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z.:%])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]+"
    r"(?:%[0-9A-Za-z_.-]+)?(?:/[0-9]{1,3})?(?![0-9A-Za-z:%/])",
    re.ASCII,
)
_SHOWN = 5  # addresses named in the "several addresses" message


class Pasted(NamedTuple):
    address: IPAddress
    from_paste: bool  # more than the address and whitespace was given: the page says what we took


def address_from_paste(text: str) -> Pasted:
    """The one public address in `text`, or a ValidationError saying why there is none."""
    stripped = (text or "").strip()
    value = _unwrapped(stripped)
    if not _PASTE_MARK.search(value):
        # One word: the address itself, so parse_ip's own message says what is wrong with it.
        bare = _without_host_prefix(value)
        return Pasted(parse_ip(bare), from_paste=bare != stripped)
    found: dict[IPAddress, None] = {}  # in the order pasted, each address once
    refused: list[ValidationError] = []
    for candidate in _candidates(value):
        try:
            found.setdefault(parse_ip(_without_host_prefix(candidate)))
        except ValidationError as e:
            refused.append(e)
    if len(found) == 1:
        return Pasted(next(iter(found)), from_paste=True)
    if found:
        shown = ", ".join(str(address) for address in list(found)[:_SHOWN])
        raise ValidationError(
            _("What you pasted holds several IP addresses (%(addresses)s): enter the one that was refused."),
            code="several",
            params={"addresses": shown + (", …" if len(found) > _SHOWN else "")},
        )
    if refused:
        # Something shaped like an address, but not one we could list: say what is wrong with it.
        raise refused[0]
    raise ValidationError(
        _("We found no IP address in what you pasted: enter the address that the rejection message names."),
        code="not_found",
    )


def _unwrapped(value: str) -> str:
    """Without surrounding quotes, brackets and a sentence's closing punctuation."""
    while True:
        before = value
        value = value.strip(_QUOTES).rstrip(".,;").strip()
        if len(value) >= 2 and _BRACKETS.get(value[0]) == value[-1]:
            value = value[1:-1].strip()
        if value == before:
            return value


def _without_host_prefix(value: str) -> str:
    """5.61.14.7/32 and 2a05::1/128 name one address: the address. Other prefixes stay, and are refused."""
    address, slash, prefix = value.partition("/")
    if slash and prefix == ("128" if ":" in address else "32"):
        return address
    return value


def _candidates(text: str) -> list[str]:
    """Every address-shaped part of `text`, in order.

    An IPv6 run counts only when it parses (so "10:30:00" in a timestamp is no address); a
    dotted quad always does, so that 5.61.14.07 or 10.0.0.1 gets its own message when it is
    all there is. A dotted quad inside an IPv6 address (::ffff:5.61.14.7) is part of it.
    """
    found: list[tuple[int, str]] = []
    taken: list[range] = []
    for match in _IPV6.finditer(text):
        candidate = match.group().rstrip(".")
        if _parses_as_ipv6(candidate):
            found.append((match.start(), candidate))
            taken.append(range(match.start(), match.end()))
    for match in _IPV4.finditer(text):
        if not any(match.start() in span for span in taken):
            found.append((match.start(), match.group()))
    return [candidate for _start, candidate in sorted(found)]


def _parses_as_ipv6(candidate: str) -> bool:
    address = candidate.split("/", 1)[0].split("%", 1)[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True
