"""Waking the worker after a commit, without ever depending on it: the database says what is
due, and a sweep does whatever a lost or unsendable message would have done."""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# A wake-up stands for every later one until its task starts (under a burst one message serves
# the whole burst), or for this long if it is lost: then the next one is queued after all.
WAKE_STANDS_FOR = 60


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


def wake_after_commit(task_name: str, *, what: str) -> None:
    """Wake a task that looks for its own work (it takes no arguments) once the surrounding
    transaction commits, unless a wake-up queued earlier has not started yet: that one will
    find this work too. The task calls woken() before it looks."""
    transaction.on_commit(lambda: wake(task_name, what=what))


def wake(task_name: str, *, what: str) -> bool:
    if not settings.CACHE_SHARED:  # the worker could not take the mark away: queue every time
        return enqueue(task_name, what=what)
    marked = False
    try:
        if not cache.add(_waiting(task_name), 1, timeout=WAKE_STANDS_FOR):
            return True  # one is waiting in the queue
        marked = True
    except (RedisError, OSError):
        pass  # the queue is on the same Redis: enqueue says what happened
    if enqueue(task_name, what=what, expires=WAKE_STANDS_FOR):
        return True
    if marked:
        woken(task_name)  # nothing is waiting after all
    return False


def woken(task_name: str) -> None:
    """A woken task starts: wake-ups from now on are queued again, for work it might not see."""
    if settings.CACHE_SHARED:
        try:
            cache.delete(_waiting(task_name))
        except (RedisError, OSError) as e:
            logger.warning("could not clear the wake-up mark of %s: %s", task_name, e)


def _waiting(task_name: str) -> str:
    return f"wake-up-waiting:{task_name}"
