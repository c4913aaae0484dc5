"""How entries look to the outside: the API, exports and SMTP messages share these."""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings

from blocklist.models import Entry


def delist_url(ip: str) -> str:
    return f"{settings.PORTAL_BASE_URL}/?ip={quote(ip, safe=':.')}"


def entry_json(entry: Entry) -> dict:
    return {
        "network": entry.network,
        "code": entry.code,
        "reason": entry.reason,
        "listed_at": entry.listed_at.isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }


def entry_api_json(entry: Entry) -> dict:
    """An entry as the machine API shows it: the public view plus what a machine manages."""
    return {
        "id": entry.pk,
        **entry_json(entry),
        "source": entry.source,
        "self_service": entry.self_service,
        "delisted_at": entry.delisted_at.isoformat() if entry.delisted_at else None,
    }
