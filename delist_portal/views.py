import logging
import time

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from delist_portal.celery import app as celery_app

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


# Answers are reused this long: a monitor polling every second, or many of them, costs the
# database and the broker one probe per process per interval, and a dead Redis is not waited
# for (two socket timeouts) on every call.
HEALTH_TTL = 5.0
_last_answer: tuple[float, dict] | None = None
_clock = time.monotonic


def _probe_all() -> dict:
    checks = {}
    for name, probe in (("database", _database), ("cache", _cache), ("broker", _broker)):
        try:
            probe()
            checks[name] = "ok"
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
