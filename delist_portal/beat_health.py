"""Celery beat's health check: `python -m delist_portal.beat_health` exits 0 while beat is ticking.

Beat answers no ping. It writes its schedule file after every task it sends
(CELERY_BEAT_SYNC_EVERY = 1), and it sends the sweep every DELIST_SWEEP_INTERVAL seconds, so a
file older than two intervals (and a margin) means beat's loop has stopped: hung, or never got past
start-up. Beat writes the file even when the broker refused the task, so this says nothing about
the broker: the worker's ping and /healthz cover that.
"""

from __future__ import annotations

import os
import sys
import time

# What Python's dbm modules add to a shelve's name (celery.beat.PersistentScheduler knows the same).
SCHEDULE_SUFFIXES = ("", ".db", ".dat", ".dir", ".bak")
# Beat's first sweep comes one interval after start; a busy machine may be a little late.
MARGIN_SECONDS = 30


def schedule_age(path: str, now: float) -> float | None:
    """Seconds since beat last wrote the schedule at path, or None when there is none."""
    mtimes = []
    for suffix in SCHEDULE_SUFFIXES:
        try:
            mtimes.append(os.stat(path + suffix).st_mtime)
        except FileNotFoundError:
            continue
    return now - max(mtimes) if mtimes else None


def beat_problem(path: str, interval: int, now: float) -> str | None:
    """Why beat looks stuck, or None when it wrote its schedule recently enough."""
    limit = 2 * interval + MARGIN_SECONDS
    age = schedule_age(path, now)
    if age is None:
        return f"no beat schedule at {path}: beat has not started"
    if age > limit:
        return f"beat last wrote {path} {age:.0f} s ago (more than {limit} s): it is not ticking"
    return None


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "delist_portal.settings")
    from django.conf import settings

    problem = beat_problem(
        settings.CELERY_BEAT_SCHEDULE_FILENAME, settings.DELIST_SWEEP_INTERVAL, time.time()
    )
    print(problem or "beat is ticking", file=sys.stderr if problem else sys.stdout)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
