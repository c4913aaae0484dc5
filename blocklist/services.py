"""Every change to the blocklist, and the one question everybody asks of it.

Each change writes its audit event in the same transaction.
"""

from __future__ import annotations

import ipaddress
import logging
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, reduce

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from blocklist import audit
from blocklist.ip import IPAddress, IPNetwork, covering_starts, network_start
from blocklist.models import DEFAULT_CODE, Entry, EntryQuerySet, active_q
from webhooks import events as webhook_events

logger = logging.getLogger(__name__)

ADDED, RELISTED, UNCHANGED = "added", "relisted", "unchanged"


def covering_q(address: IPAddress) -> Q:
    """Entries whose network contains the address, as one index can answer it.

    PostgreSQL: `network_cidr >>= ip`, one probe of entry_cidr_idx (live entries only).
    Elsewhere: one equality probe per prefix length on (network_start, prefix_len), so a
    lookup costs a handful of index reads whatever the size of the list.
    """
    if connection.vendor == "postgresql":
        return Q(network_cidr__covers=str(address))
    probes = (Q(network_start=start, prefix_len=prefix) for prefix, start in covering_starts(address))
    return reduce(operator.or_, probes)


def entries_covering(address: IPAddress, *, now: datetime | None = None) -> EntryQuerySet:
    """Active entries whose network contains the address, broadest first.

    One query; on PostgreSQL its WHERE is `network_cidr >>= ip AND delisted_at IS NULL AND
    (expires_at IS NULL OR expires_at > now)`, which the partial entry_cidr_idx serves. Most of
    a lookup's cost is Django building that query, so it is built with one filter() on an
    ordering made once.
    """
    return _broadest_first().filter(active_q(now or timezone.now()), covering_q(address))


@cache
def _broadest_first() -> EntryQuerySet:
    # Never evaluated itself: each lookup filters (clones) it.
    return Entry.objects.order_by("prefix_len", "listed_at")


def lookup(address: IPAddress, *, now: datetime | None = None) -> list[Entry]:
    """entries_covering(address) as a list: what the API, the start page and confirming ask.

    On PostgreSQL the query is built and compiled by the ORM once per process, and each lookup
    only runs that SQL with its own address and time, and makes the rows into entries: building
    and compiling cost twice the query itself, a RawQuerySet half as much again
    (docs/benchmarks.md). Elsewhere the probes differ per address: the ORM's way.
    """
    now = now or timezone.now()
    if connection.vendor != "postgresql":
        return list(entries_covering(address, now=now))
    compiled = _lookup_sql()
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, _lookup_params(compiled, address, now))
        rows = cursor.fetchall()
    return [Entry.from_db(connection.alias, compiled.columns, row) for row in rows]


def listed_sql(address: IPAddress, *, now: datetime) -> tuple[str, list]:
    """Whether lookup(address) finds anything, as an SQL condition and its parameters, for a
    statement of the caller's own (PostgreSQL): a submission asks it in the statement that
    counts its mail, one round trip fewer."""
    compiled = _lookup_sql()
    return f"EXISTS ({compiled.sql})", _lookup_params(compiled, address, now)


def _lookup_params(compiled: _Compiled, address: IPAddress, now: datetime) -> list:
    params = list(compiled.params)
    for i in compiled.at_now:
        params[i] = now
    params[compiled.at_address] = str(address)
    return params


_TEMPLATE_ADDRESS = "192.0.2.1"
_TEMPLATE_NOW = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    at_now: tuple[int, ...]  # where the time of the lookup goes among the parameters
    at_address: int  # and where the address goes
    columns: tuple[str, ...]  # the attribute each selected column fills


@cache
def _lookup_sql() -> _Compiled:
    """entries_covering's SQL with two template values, where they sit among its parameters,
    and the columns it selects."""
    query = entries_covering(ipaddress.ip_address(_TEMPLATE_ADDRESS), now=_TEMPLATE_NOW).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    selected = [expression for expression, _sql, _alias in compiler.select]
    at_now = tuple(i for i, p in enumerate(params) if p == _TEMPLATE_NOW)
    at_address = [i for i, p in enumerate(params) if p == _TEMPLATE_ADDRESS]
    # Anything else would mean the query changed shape: fail loudly, not answer wrongly. Rows
    # are made into entries as they come: no column may need a converter (none does on PostgreSQL).
    if (
        not at_now
        or len(at_address) != 1
        or len(at_now) + 1 != len(params)
        or compiler.get_converters(selected)
    ):
        raise RuntimeError(f"the lookup query changed shape: {sql} {params!r}")
    columns = tuple(expression.target.attname for expression in selected)
    return _Compiled(sql, tuple(params), at_now, at_address[0], columns)


def new_entry(network: IPNetwork, **fields) -> Entry:
    """An unsaved entry for the network, with its lookup columns filled in."""
    return Entry(
        network=str(network),
        version=network.version,
        network_start=network_start(network),
        prefix_len=network.prefixlen,
        **fields,
    )


def entry_list(
    network: IPNetwork,
    *,
    actor: str,
    reason: str = "",
    code: str = DEFAULT_CODE,
    source: str = "",
    expires_at: datetime | None = None,
    self_service: bool = True,
    now: datetime | None = None,
) -> tuple[Entry, str]:
    """List a network unless a live entry already does; returns (entry, added|relisted|unchanged)."""
    now = now or timezone.now()
    cidr = str(network)
    with transaction.atomic():
        live = Entry.objects.select_for_update().filter(network=cidr, delisted_at__isnull=True).first()
        if live is not None:
            if live.is_active(now):
                return live, UNCHANGED
            entries_close_lapsed([live.pk], now=now)
        entry = new_entry(
            network,
            reason=reason,
            code=code,
            source=source,
            listed_at=now,
            expires_at=expires_at,
            self_service=self_service,
        )
        entry.full_clean(exclude=["network"], validate_constraints=False)
        try:
            with transaction.atomic():
                entry.save()
        except IntegrityError:
            # Another process listed the same network between our check and insert.
            return Entry.objects.get(network=cidr, delisted_at__isnull=True), UNCHANGED
        outcome = RELISTED if Entry.objects.filter(network=cidr).exclude(pk=entry.pk).exists() else ADDED
        audit.record(
            audit.Action.RELISTED if outcome == RELISTED else audit.Action.LISTED,
            actor=actor,
            entry=entry,
            reason=reason,
            at=now,
        )
        webhook_events.entry_listed(entry)
    logger.info("%s %s by %s (source=%s, code=%s)", outcome, cidr, actor, source or "-", code)
    return entry, outcome


def entry_relist(entry: Entry, *, actor: str, reason: str = "") -> tuple[Entry, str]:
    """List an entry's network again, as a new entry with the same terms."""
    return entry_list(
        entry.ip_network,
        actor=actor,
        reason=reason or entry.reason,
        code=entry.code,
        source=entry.source,
        self_service=entry.self_service,
    )


def entries_delist(
    entry_ids: Iterable[int], *, actor: str, reason: str = "", request=None, now: datetime | None = None
) -> int:
    """Stamp entries delisted; entries already delisted are left as they were."""
    now = now or timezone.now()
    by = f"delist request #{request.pk}" if request is not None else actor
    with transaction.atomic():
        ids = list(
            Entry.objects.select_for_update()
            .filter(pk__in=list(entry_ids), delisted_at__isnull=True)
            .values_list("pk", flat=True)
        )
        Entry.objects.filter(pk__in=ids).update(delisted_at=now, delisted_by=by)
        audit.record_entries(audit.Action.DELISTED, ids, actor=actor, reason=reason, at=now, request=request)
        webhook_events.entries_delisted(ids, at=now)
    if ids:
        logger.info("delisted %d entr%s (%s)", len(ids), "y" if len(ids) == 1 else "ies", by)
    return len(ids)


def entries_delist_for_requests(by_request: Mapping[int, int], *, actor: str, now: datetime) -> int:
    """entries_delist for a batch of delist requests: `by_request` maps each entry id to the
    request that delists it (its `delisted_by` and the request of its audit event). Set-based:
    a few statements per batch, whatever its size. Entries already delisted are left alone."""
    with transaction.atomic():
        # Locked in id order: two sweeps sharing an entry queue up instead of deadlocking.
        ids = list(
            Entry.objects.select_for_update()
            .filter(pk__in=list(by_request), delisted_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        delisted = {pk: by_request[pk] for pk in ids}
        _stamp_delisted_by_request(delisted, now=now)
        audit.record_entries_by_request(audit.Action.DELISTED, delisted, actor=actor, at=now)
        webhook_events.entries_delisted(delisted, at=now)
    if ids:
        logger.info(
            "delisted %d entr%s for %d delist request(s)",
            len(ids),
            "y" if len(ids) == 1 else "ies",
            len(set(delisted.values())),
        )
    return len(ids)


def _stamp_delisted_by_request(by_request: dict[int, int], *, now: datetime) -> None:
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Entry._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS e SET delisted_at = %s, delisted_by = 'delist request #' || v.request_id "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(entry_id, request_id) WHERE e.id = v.entry_id",
                [now, list(by_request), list(by_request.values())],
            )
        return
    # SQLite: the same as a CASE over the ids, in chunks its limit on parameters takes.
    items = list(by_request.items())
    for start in range(0, len(items), 1000):
        chunk = items[start : start + 1000]
        by = Case(*(When(pk=pk, then=Value(f"delist request #{request_id}")) for pk, request_id in chunk))
        Entry.objects.filter(pk__in=[pk for pk, _ in chunk]).update(delisted_at=now, delisted_by=by)


def entries_close_lapsed(entry_ids: list[int], *, now: datetime) -> None:
    Entry.objects.filter(pk__in=entry_ids).update(delisted_at=now, delisted_by="expiry")
    audit.record_entries(audit.Action.ENTRY_EXPIRED, entry_ids, actor=audit.WORKER, at=now)


def entries_expire(*, now: datetime | None = None) -> int:
    """Close entries whose expires_at has passed, so history says when they stopped."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Entry.objects.select_for_update(skip_locked=True)
            .filter(delisted_at__isnull=True, expires_at__lte=now)
            .values_list("pk", flat=True)
        )
        if ids:
            entries_close_lapsed(ids, now=now)
    if ids:
        logger.info("expired %d entr%s", len(ids), "y" if len(ids) == 1 else "ies")
    return len(ids)


EDITABLE_TERMS = ("reason", "code", "source", "expires_at", "self_service")


def entry_update(entry: Entry, *, actor: str, **terms) -> bool:
    """Change an entry's public terms (never its network); True when anything changed."""
    unknown = set(terms) - set(EDITABLE_TERMS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    changed = {name: value for name, value in terms.items() if getattr(entry, name) != value}
    if not changed:
        return False
    with transaction.atomic():
        Entry.objects.filter(pk=entry.pk).update(**changed)
        for name, value in changed.items():
            setattr(entry, name, value)
        audit.record(audit.Action.UPDATED, actor=actor, entry=entry, reason=", ".join(sorted(changed)))
    logger.info("entry %s (%s) updated by %s: %s", entry.pk, entry.network, actor, ", ".join(sorted(changed)))
    return True
