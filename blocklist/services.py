"""Every change to the blocklist, and the one question everybody asks of it."""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from blocklist.ip import IPAddress, IPNetwork, covering_starts, network_start, parse_network
from blocklist.models import DEFAULT_CODE, Entry, EntryQuerySet

logger = logging.getLogger(__name__)


def entries_covering(address: IPAddress, *, now: datetime | None = None) -> EntryQuerySet:
    """Active entries whose network contains the address.

    One equality probe per possible prefix length on (network_start, prefix_len), so the
    lookup is a handful of index hits whatever the size of the list.
    """
    probes = [Q(network_start=start, prefix_len=prefix) for prefix, start in covering_starts(address)]
    return Entry.objects.active(now).filter(reduce(operator.or_, probes)).order_by("prefix_len", "listed_at")


def entry_list(
    network: IPNetwork,
    *,
    reason: str = "",
    code: str = DEFAULT_CODE,
    source: str = "",
    expires_at: datetime | None = None,
    self_service: bool = True,
    now: datetime | None = None,
) -> tuple[Entry, bool]:
    """List a network unless a live entry already does; returns (entry, created)."""
    now = now or timezone.now()
    cidr = str(network)
    with transaction.atomic():
        live = Entry.objects.select_for_update().filter(network=cidr, delisted_at__isnull=True).first()
        if live is not None:
            if live.is_active(now):
                return live, False
            _stamp_expired([live.pk], now=now)
        entry = Entry(
            network=cidr,
            version=network.version,
            network_start=network_start(network),
            prefix_len=network.prefixlen,
            reason=reason,
            code=code,
            source=source,
            listed_at=now,
            expires_at=expires_at,
            self_service=self_service,
        )
        entry.full_clean(exclude=["network"])
        try:
            with transaction.atomic():
                entry.save()
        except IntegrityError:
            # Another importer listed the same network between our check and insert.
            return Entry.objects.get(network=cidr, delisted_at__isnull=True), False
    logger.info("listed %s (source=%s, code=%s)", cidr, source or "-", code)
    return entry, True


def entries_delist(entry_ids: Iterable[int], *, by: str, now: datetime | None = None) -> int:
    """Stamp entries delisted; entries already delisted are left as they were."""
    now = now or timezone.now()
    count = Entry.objects.filter(pk__in=list(entry_ids), delisted_at__isnull=True).update(
        delisted_at=now, delisted_by=by
    )
    if count:
        logger.info("delisted %d entr%s (%s)", count, "y" if count == 1 else "ies", by)
    return count


def _stamp_expired(entry_ids: Iterable[int], *, now: datetime) -> int:
    return Entry.objects.filter(pk__in=list(entry_ids), delisted_at__isnull=True).update(
        delisted_at=now, delisted_by="expiry"
    )


def entries_expire(*, now: datetime | None = None) -> int:
    """Close entries whose expires_at has passed, so history says when they stopped."""
    now = now or timezone.now()
    ids = list(
        Entry.objects.filter(delisted_at__isnull=True, expires_at__lte=now).values_list("pk", flat=True)
    )
    count = _stamp_expired(ids, now=now) if ids else 0
    if count:
        logger.info("expired %d entr%s", count, "y" if count == 1 else "ies")
    return count


@dataclass
class ImportSummary:
    added: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, text, why)


def blocklist_import_plain(lines: Iterable[str], *, source: str = "import") -> ImportSummary:
    """Add every network of a plain list (one IP or CIDR a line, # comments). Never removes."""
    summary = ImportSummary()
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            network = parse_network(text)
        except ValidationError as e:
            summary.rejected.append((number, text, "; ".join(e.messages)))
            continue
        _entry, created = entry_list(network, source=source)
        if created:
            summary.added += 1
        else:
            summary.unchanged += 1
    return summary
