"""A submission on PostgreSQL in one round trip: the mail limits' locks, their counts, the
request, its audit row, the superseding of the sender's older pending request and the owed
confirmation mail, sent as two statements in one message.

The same steps as request_submit's portable path (services.py), which SQLite takes, and the same
rows: each is made from a model instance, so columns and defaults stay the model's. Through the
ORM those steps cost a dozen round trips, three times the Python and twice PostgreSQL's work
(docs/benchmarks.md, "Submissions").

The locks are a statement of their own because a statement sees the database as it was when it
began: counting in the statement that waited for the lock could miss the mail of the submission
that held it. PostgreSQL runs the two as one transaction (one implicit transaction per message
in autocommit, or inside the caller's).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, connections
from django.db.models import Model

from blocklist import audit
from blocklist.models import Event
from portal_lib import prepared
from portal_lib.rates import parse_rate
from requests_app import limits, wakeups
from requests_app.models import DelistRequest, Mail, State


def submit(
    *, request: DelistRequest, mail: Mail, event: Event, now: datetime, wake: str
) -> tuple[list[int], bool]:
    """Write the new (unsaved) request, its `submitted` event and its confirmation mail, unless a
    mail limit is full (MailLimitReached, nothing written); supersede the mailbox's older pending
    requests for the IP. Sets the wake-up mark of the task `wake` (the mail sender) unless one is
    set (wakeups). Returns the ids of the superseded requests, and whether it set the mark: then
    the caller queues the wake-up once this commits. The request and the mail get their ids."""
    params = {
        **_values("r", request),
        **_values("e", event),
        **_values("m", mail),
        "mailbox_lock": limits.MAILBOX_LOCKS,
        "domain_lock": limits.DOMAIN_LOCKS,
        "now": now,
        "superseded_reason": "by request #",
        **wakeups.mark_params(wake, now=now),
    }
    windows = {}
    for scope, rate in (("mailbox", settings.DELIST_MAILBOX_RATE), ("domain", settings.DELIST_DOMAIN_RATE)):
        limit, period = parse_rate(rate)
        windows[scope] = timedelta(seconds=period)
        params[f"{scope}_since"] = now - windows[scope]
        params[f"{scope}_offset"] = limit - 1
    locks, writes = _sql()
    with connection.cursor() as cursor:
        # Prepared: planning the writes each time cost PostgreSQL more than running them.
        prepared.execute(cursor, prepared.statement(writes), params, first=locks)
        request_id, mail_id, superseded, mailbox_blocked, domain_blocked, marked = cursor.fetchone()
    for scope, blocking in (("mailbox", mailbox_blocked), ("domain", domain_blocked)):
        if blocking is not None:
            raise limits.MailLimitReached(scope, limits.seconds_until(blocking + windows[scope], now=now))
    for instance, pk in ((request, request_id), (mail, mail_id)):
        instance.pk = pk
        instance._state.adding, instance._state.db = False, connection.alias
    mail.request = request
    return superseded or [], marked


def _values(prefix: str, instance: Model) -> dict:
    """The new row's values as save() would write them, under names `prefix_column`."""
    # The connection itself, not the proxy that looks it up again for every attribute asked.
    db = connections[connection.alias]
    return {
        f"{prefix}_{field.column}": field.get_db_prep_save(field.pre_save(instance, True), db)
        for field in _columns(type(instance))
    }


@cache
def _columns(model: type[Model]) -> tuple:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


def _insert(model: type[Model], prefix: str, source: str, **computed: str) -> str:
    """INSERT ... SELECT of one row from its parameters, each cast to its column's type (a bare
    parameter in a SELECT list is text); `computed` columns take an expression over `source`."""
    qn = connection.ops.quote_name
    columns, values = [], []
    for field in _columns(model):
        columns.append(qn(field.column))
        cast = f"CAST(%({prefix}_{field.column})s AS {field.cast_db_type(connection)})"
        values.append(computed.get(field.column) or cast)
    table = qn(model._meta.db_table)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {source}"


@cache
def _sql() -> tuple[str, str]:
    """The locks, and one statement of data-modifying CTEs (they all see the database as it was
    before it: the superseding UPDATE cannot meet the request inserted beside it)."""
    qn = connection.ops.quote_name
    requests, mails, events = (qn(m._meta.db_table) for m in (DelistRequest, Mail, Event))
    confirmation = Mail.Kind.CONFIRMATION.value

    def blocking(column: str, scope: str) -> str:
        # The limit-th newest mail of the window: while it is in the window, the limit is full.
        return (
            f"(SELECT created_at FROM {mails} WHERE kind = '{confirmation}' AND {column} = %(m_{column})s "
            f"AND created_at > %({scope}_since)s ORDER BY created_at DESC OFFSET %({scope}_offset)s LIMIT 1)"
        )

    # One for each superseded request, naming the new one.
    superseded_events = _insert(
        Event,
        "e",
        "older, request",
        request_id="older.id",
        action=f"'{audit.Action.SUPERSEDED.value}'",
        reason="%(superseded_reason)s || request.id",
    )
    wake_ctes, wake_lock, marked = wakeups.mark_sql(table_of_new_row="request")
    # The wake-up's lock (shared) last: it orders nothing between submissions.
    locks = (
        "SELECT pg_advisory_xact_lock(%(mailbox_lock)s, hashtext(%(m_mailbox)s)), "
        f"pg_advisory_xact_lock(%(domain_lock)s, hashtext(%(m_email_domain)s)), {wake_lock}"
    )
    return (
        locks,
        f"""
WITH blocking AS (
  SELECT {blocking("mailbox", "mailbox")} AS mailbox_at, {blocking("email_domain", "domain")} AS domain_at
), request AS (
  {_insert(DelistRequest, "r", "blocking WHERE mailbox_at IS NULL AND domain_at IS NULL")}
  RETURNING id
), submitted AS (
  {_insert(Event, "e", "request", request_id="request.id")}
), older AS (
  UPDATE {requests} AS old
  SET state = '{State.SUPERSEDED.value}', superseded_by_id = request.id, closed_at = %(now)s,
      token_expires_at = NULL, token_hash = NULL
  FROM request
  WHERE old.mailbox = %(r_mailbox)s AND old.ip = CAST(%(r_ip)s AS inet)
    AND old.state = '{State.PENDING.value}'
  RETURNING old.id
), dropped AS (
  UPDATE {mails} SET cancelled_at = %(now)s
  WHERE request_id IN (SELECT id FROM older) AND sent_at IS NULL AND cancelled_at IS NULL
), superseded AS (
  {superseded_events}
), mail AS (
  {_insert(Mail, "m", "request", request_id="request.id")}
  RETURNING id
), {wake_ctes}
SELECT (SELECT id FROM request), (SELECT id FROM mail), (SELECT array_agg(id ORDER BY id) FROM older),
       mailbox_at, domain_at, {marked}
FROM blocking
""",
    )
