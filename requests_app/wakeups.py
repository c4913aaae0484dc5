"""Waking the worker's mail sender once per burst, without ever depending on it: the database
says what is owed, and the sweep sends whatever a lost wake-up would have.

A mark in the database (WakeUp, a row per task) says that a wake-up is queued and its task
has not started: until it starts, later mail queues nothing, since that run will find it. The
task takes the mark away before it looks for mail (woken). So whoever finds the mark set and
queues nothing must have committed its mail before the task looks, or the mail would wait for
the sweep:
- after a commit (wake_after_commit: the ORM's path, the sweep's batches) the mark is asked
  once the mail is in;
- a submission on PostgreSQL asks in the statement that writes its mail (submission_sql), so it
  holds the wake-up's lock, shared, until its commit, and woken takes the mark away under the
  same lock, exclusive: it waits for every submission that saw the mark.
A mark older than STANDS_FOR (its message lost) stands for nothing: the next mail queues again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from portal_lib.queueing import enqueue
from requests_app.models import WakeUp

logger = logging.getLogger(__name__)

STANDS_FOR = timedelta(seconds=60)
# pg_advisory_xact_lock's two keys: a class of the portal's own (as limits' locks) and a task.
LOCKS = 0x776B


def wake_after_commit(task_name: str, *, what: str) -> None:
    """Wake a task that looks for its own work (it takes no arguments) once the surrounding
    transaction commits, unless a wake-up queued earlier has not started yet."""
    transaction.on_commit(lambda: wake(task_name, what=what))


def wake(task_name: str, *, what: str) -> bool:
    """Queue a wake-up unless one is waiting; False when it could not be queued."""
    try:
        if not _mark(task_name, now=timezone.now()):
            return True  # one is waiting in the queue
    except DatabaseError as e:
        logger.warning("could not ask the wake-up mark of %s (%s): queueing one", task_name, e)
        return enqueue(task_name, what=what, expires=STANDS_FOR.total_seconds())
    return queue_marked(task_name, what=what)


def queue_marked(task_name: str, *, what: str) -> bool:
    """Queue the wake-up whose mark was just set; take the mark away if it could not be queued,
    so that it stands for nothing."""
    if enqueue(task_name, what=what, expires=STANDS_FOR.total_seconds()):
        return True
    try:
        woken(task_name)
    except DatabaseError as e:  # then it stands for STANDS_FOR at most
        logger.warning("could not take away the wake-up mark of %s: %s", task_name, e)
    return False


def woken(task_name: str) -> None:
    """A woken task starts: take the mark away, so that work owed from now on queues another
    wake-up. Waits for the submissions in flight that saw the mark, so that it finds their mail."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCKS, task_name])
        WakeUp.objects.filter(task=task_name).delete()


def _mark(task_name: str, *, now: datetime) -> bool:
    """Set the mark unless a live one is set (one that has stood too long is taken over);
    whether this call set it. Its own statement after a commit: the row it may lock is held
    only for that statement."""
    table = connection.ops.quote_name(WakeUp._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (task, queued_at) VALUES (%s, %s) ON CONFLICT (task) "
            f"DO UPDATE SET queued_at = excluded.queued_at WHERE {table}.queued_at <= %s RETURNING 1",
            [task_name, adapt(now), adapt(now - STANDS_FOR)],
        )
        return cursor.fetchone() is not None


def mark_sql(*, table_of_new_row: str) -> tuple[str, str, str]:
    """For a statement of the caller's own on PostgreSQL: two CTEs that set the mark when a row
    is in `table_of_new_row` (one of the statement's CTEs); the lock, as an SQL expression, that
    the transaction must take before that statement (it lasts until the commit); and the
    expression, over the CTEs, of whether they set the mark. Their parameters are mark_params'."""
    table = connection.ops.quote_name(WakeUp._meta.db_table)
    # Not _mark's DO UPDATE: that locks the row even when it changes nothing, and here the lock
    # would last to the commit of every submission. DO NOTHING and this UPDATE lock only a row
    # they change.
    ctes = (
        f"wake_new AS (INSERT INTO {table} (task, queued_at) "
        f"SELECT CAST(%(wake_task)s AS varchar), CAST(%(wake_now)s AS timestamp with time zone) "
        f"FROM {table_of_new_row} ON CONFLICT (task) DO NOTHING RETURNING 1), "
        f"wake_stale AS (UPDATE {table} SET queued_at = %(wake_now)s WHERE task = %(wake_task)s "
        f"AND queued_at <= %(wake_stale)s AND EXISTS (SELECT 1 FROM {table_of_new_row}) RETURNING 1)"
    )
    lock = "pg_advisory_xact_lock_shared(%(wake_lock)s, hashtext(%(wake_task)s))"
    return ctes, lock, "(SELECT count(*) FROM wake_new) + (SELECT count(*) FROM wake_stale) > 0"


def mark_params(task_name: str, *, now: datetime) -> dict:
    return {"wake_task": task_name, "wake_now": now, "wake_stale": now - STANDS_FOR, "wake_lock": LOCKS}
