"""Keep the worker's log about what happened: Celery's routine INFO lines for the periodic tasks
(beat sending one, the worker receiving it, the task succeeding, a run that expired in the queue
on a busy machine being discarded) are dropped.

Every few seconds they would bury the lines that matter. What a sweep or the mail sweep did is
logged by the sweep itself, and only when it did something; a periodic task that fails or is
retried still logs, at WARNING or ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from celery import current_app


def _task_names(record: logging.LogRecord) -> set[str]:
    """The task names a record's arguments may hold: the worker's "Task %(name)s[%(id)s]
    received/succeeded" passes a mapping; beat's "Sending due task %s (%s)" (entry, task) and the
    worker's "Discarding revoked task: %s[%s]" (task, id) pass tuples."""
    args = record.args
    if isinstance(args, Mapping):
        values = [args.get("name")]
    elif isinstance(args, tuple):
        values = list(args)
    else:
        return set()
    return {value for value in values if isinstance(value, str)}


def periodic_task_names() -> set[str]:
    return {entry["task"] for entry in current_app.conf.beat_schedule.values()}


class QuietRoutinePeriodicTasks(logging.Filter):
    """A filter for the loggers celery.beat, celery.worker.strategy and celery.app.trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return not _task_names(record) & periodic_task_names()
