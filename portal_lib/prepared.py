"""Statements that PostgreSQL parses and plans once per connection, not on every run.

A hot statement of many CTEs or a long condition can cost PostgreSQL more to parse and plan
than to run (docs/benchmarks.md, "Submissions"). PREPARE keeps the plan in the server's
session until the connection closes; each run then sends EXECUTE with its values.

The statement is named from a digest of its SQL, so two statements never share a name. A
connection remembers what it has prepared; a new connection prepares again. PREPARE is not
undone by a rollback, but a pooler's session reset (DISCARD ALL) drops them all behind our
back: a run that finds its statement gone forgets them all, prepares its own again and runs once
more, outside a transaction only (in autocommit the failed message rolled back whole, so running
it again does it once; inside one, the transaction has failed and the error is the caller's).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

from django.db import DatabaseError
from psycopg2 import errorcodes

# psycopg2's placeholders, and its escaped percent sign.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


@dataclass(frozen=True)
class Statement:
    name: str
    prepare: str  # PREPARE of the statement, its placeholders numbered ($1, $2, ...)
    execute: str  # EXECUTE of it, with the cursor's placeholders (%s or %(name)s) as arguments


@cache
def statement(sql: str) -> Statement:
    """The prepared form of `sql`, which uses one style of psycopg2 placeholder: %s or %(name)s.
    A value that PostgreSQL cannot type from where it stands (a bare one in a SELECT list)
    needs a CAST in `sql`, as it would in any PREPARE."""
    named: list[str] = []
    positional = 0

    def numbered(match: re.Match) -> str:
        nonlocal positional
        if match[0] == "%%":
            return "%"
        if match[1] is None:
            positional += 1
            return f"${positional}"
        if match[1] not in named:
            named.append(match[1])
        return f"${named.index(match[1]) + 1}"

    body = _PLACEHOLDER.sub(numbered, sql)
    if named and positional:
        raise ValueError("a prepared statement takes %s or %(name)s placeholders, not both")
    arguments = [f"%({name})s" for name in named] or ["%s"] * positional
    name = "portal_" + hashlib.sha256(sql.encode()).hexdigest()[:20]
    call = f"EXECUTE {name}({', '.join(arguments)})" if arguments else f"EXECUTE {name}"
    return Statement(name, f"PREPARE {name} AS {body}", call)


def execute(cursor, prepared: Statement, params, *, first: str = "") -> None:
    """Run the prepared statement with `params` on a Django cursor, preparing it first where
    this connection has not. `first`, statements in the same style of placeholders, goes in the
    same message, before it: one round trip, one transaction in autocommit."""
    db = cursor.db
    made_on, names = getattr(db, "_portal_prepared", (None, set()))
    if made_on is not db.connection:  # a new connection has none of them
        names = set()
        db._portal_prepared = (db.connection, names)
    if prepared.name not in names:
        _prepare(cursor, prepared)
        names.add(prepared.name)
    message = f"{first}; {prepared.execute}" if first else prepared.execute
    try:
        cursor.execute(message, params)
    except DatabaseError as e:
        if getattr(e.__cause__, "pgcode", None) != errorcodes.INVALID_SQL_STATEMENT_NAME:
            raise
        names.clear()  # a session reset takes them all: each is prepared again on its next run
        if db.in_atomic_block:
            raise
        _prepare(cursor, prepared)
        names.add(prepared.name)
        cursor.execute(message, params)


def _prepare(cursor, prepared: Statement) -> None:
    try:
        cursor.execute(prepared.prepare)
    except DatabaseError as e:
        # Still there after all (forgotten when another one was found gone): the same SQL, as
        # its name says. Outside a transaction only: inside one, the failed PREPARE ended it.
        duplicate = getattr(e.__cause__, "pgcode", None) == errorcodes.DUPLICATE_PREPARED_STATEMENT
        if not duplicate or cursor.db.in_atomic_block:
            raise
