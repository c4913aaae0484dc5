"""Keep the worker's log about what happened: Celery's routine INFO lines for the periodic tasks
(beat sending one, the worker receiving it, the task succeeding) are dropped.

Every few seconds they would bury the lines that matter. What a sweep or the mail sweep did is
logged by the sweep itself, and only when it did something; a periodic task that fails or is
retried still logs, at WARNING or ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from celery import current_app


def _task_name(record: logging.LogRecord) -> str | None:
    args = record.args
    if isinstance(args, Mapping):  # the worker: "Task %(name)s[%(id)s] received" and "succeeded"
        name = args.get("name")
    elif isinstance(args, tuple) and len(args) == 2:  # beat: "Sending due task %s (%s)", entry, task
        name = args[1]
    else:
        return None
    return name if isinstance(name, str) else None


def periodic_task_names() -> set[str]:
    return {entry["task"] for entry in current_app.conf.beat_schedule.values()}


class QuietRoutinePeriodicTasks(logging.Filter):
    """A filter for the loggers celery.beat, celery.worker.strategy and celery.app.trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return _task_name(record) not in periodic_task_names()
