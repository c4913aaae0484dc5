"""Refuse to start a process whose delist settings are out of range.

manage.py runs system checks itself; gunicorn and Celery do not, so the WSGI module
and the Celery app call this once the apps are loaded.
"""

from django.core import checks
from django.core.management.base import SystemCheckError


def require_valid_settings() -> None:
    errors = [m for m in checks.run_checks(tags=["delist"]) if m.is_serious()]
    if errors:
        raise SystemCheckError("\n".join(f"{e.id}: {e.msg}" for e in errors))
