import logging

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


@never_cache
def healthz(request):
    checks = {}
    for name, probe in (("database", _database), ("cache", _cache), ("broker", _broker)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as e:  # noqa: BLE001  (any failed probe makes the check fail)
            logger.warning("health check %s failed: %s", name, e)
            checks[name] = f"fail: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)
