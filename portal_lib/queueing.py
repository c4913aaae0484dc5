"""Queueing the worker's tasks, after a commit or now, without ever depending on it: the database
says what is due, and a sweep does whatever a lost or unsendable message would have done."""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task_name: str, *args, what: str, **options) -> None:
    """Queue the task by name once the surrounding transaction commits."""
    transaction.on_commit(lambda: enqueue(task_name, *args, what=what, **options))


def enqueue(task_name: str, *args, what: str, **options) -> bool:
    """Queue the task now; False, with a warning, when the broker is away."""
    try:
        current_app.tasks[task_name].apply_async(args, **options)
    except Exception as e:  # noqa: BLE001  (broker away: the next sweep does the work)
        logger.warning("could not queue %s (%s); the next sweep does it", what, e)
        return False
    return True
