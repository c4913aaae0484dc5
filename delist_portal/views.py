import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from delist_portal.celery import app as celery_app
from monitoring.heartbeats import SWEEP, heartbeat_last

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.set("healthz", "ok", 10)
    if cache.get("healthz") != "ok":
        raise RuntimeError("value written was not read back")


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)


class CheckFailed(Exception):
    """A probe that got an answer, and the answer is bad: its message is the check's value."""


# A fresh install has no sweep yet: give the beat this process's first sweep intervals to start.
_started_at = timezone.now()
# A beat that missed this many sweeps in a row is dead (or the worker that runs them is)...
SWEEPS_MISSED = 3
# ...but never sooner than this: with a lab's 1-second interval a busy machine would flap.
SWEEP_LATE_MIN = 60


def _sweep() -> None:
    late_after = timedelta(seconds=max(SWEEPS_MISSED * settings.DELIST_SWEEP_INTERVAL, SWEEP_LATE_MIN))
    now = timezone.now()
    beat = heartbeat_last(SWEEP)
    if beat is None:
        if now - _started_at > late_after:
            raise CheckFailed("no sweep has run yet")
        return
    if now - beat.finished_at > late_after:
        raise CheckFailed(f"the last sweep finished {int((now - beat.finished_at).total_seconds())} s ago")


# Answers are reused this long: a monitor polling every second, or many of them, costs the
# database and the broker one probe per process per interval, and a dead Redis is not waited
# for (two socket timeouts) on every call.
HEALTH_TTL = 5.0
_last_answer: tuple[float, dict] | None = None
_clock = time.monotonic


def _probe_all() -> dict:
    checks = {}
    for name, probe in (("database", _database), ("cache", _cache), ("broker", _broker), ("sweep", _sweep)):
        try:
            probe()
            checks[name] = "ok"
        except CheckFailed as e:
            logger.warning("health check %s failed: %s", name, e)
            checks[name] = f"fail: {e}"
        except Exception as e:  # noqa: BLE001  (any failed probe makes the check fail)
            logger.warning("health check %s failed: %s", name, e)
            checks[name] = f"fail: {type(e).__name__}"
    return checks


@never_cache
def healthz(request):
    global _last_answer
    if _last_answer is None or _clock() - _last_answer[0] > HEALTH_TTL:
        _last_answer = (_clock(), _probe_all())
    checks = _last_answer[1]
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)
