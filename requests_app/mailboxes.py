"""Recipients as the mail limits see them: one mailbox, however it is spelled.

`Postmaster+a@Mail.Example.com` and `postmaster@mail.example.com` reach the same person, so the
per-mailbox and per-domain limits count them together.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def recipient_domain(email: str) -> str:
    """The domain part, lower-cased, without a trailing dot."""
    return email.rpartition("@")[2].strip().rstrip(".").lower()


def mailbox(email: str) -> str:
    """The normalized mailbox: case-folded, with any `+tag` dropped from the local part."""
    local = email.rpartition("@")[0].lower().split("+", 1)[0]
    return f"{local}@{recipient_domain(email)}"


def validate_deliverable(email: str) -> None:
    """Refuse addresses the portal's relay must never be pointed at: internal hosts and IP literals."""
    domain = recipient_domain(email)
    if domain.startswith("["):
        raise ValidationError(
            _("Enter an address at a domain name, not at an IP address."), code="ip_literal"
        )
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        raise ValidationError(
            _("Enter an address at a domain name, not at an IP address."), code="ip_literal"
        )
    if domain == "localhost" or domain.endswith(".localhost"):
        raise ValidationError(_("Enter an address at a public domain, not at localhost."), code="localhost")
    if "." not in domain:
        raise ValidationError(
            _("Enter the full domain of the address (like example.com), not a single name."),
            code="single_label",
        )
