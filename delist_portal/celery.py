"""The Celery app: `celery -A delist_portal worker` and `celery -A delist_portal beat`."""

import logging
import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "delist_portal.settings")

app = Celery("delist_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _schedule_sweep(sender, **kwargs) -> None:
    from django.conf import settings

    interval = settings.DELIST_SWEEP_INTERVAL
    # A sweep not started within one interval is dropped: the next one does the same work.
    sender.add_periodic_task(interval, sender.signature("requests_app.sweep"), name="sweep", expires=interval)
    # Mail has a task of its own: a hanging SMTP server never holds a due delisting back.
    sender.add_periodic_task(
        interval, sender.signature("requests_app.mails_send_due"), name="mails_send_due", expires=interval
    )
    # Webhooks too: a receiver that hangs holds back neither mail nor delistings.
    sender.add_periodic_task(
        interval, sender.signature("webhooks.deliveries_send_due"), name="webhooks_send_due", expires=interval
    )
    sender.add_periodic_task(3600, sender.signature("requests_app.sessions_clear"), name="sessions_clear")
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger, **kwargs) -> None:
    """Celery puts handlers of its own on the root logger (and on celery.task) in place of
    Django's: with LOG_FORMAT=json they write JSON lines too, redacted and with the task's id."""
    from django.conf import settings

    if settings.LOG_FORMAT != "json":
        return
    from celery.utils.log import get_multiprocessing_logger

    from portal_lib.json_logging import JsonFormatter
    from portal_lib.log_redaction import RedactConfirmationLinks
    from portal_lib.request_id import LogContext

    # The pool's own logger (a child that died, say) is set up beside the root's, unsignalled.
    pool_logger = get_multiprocessing_logger() if logger is logging.getLogger() else None
    for handler in [*logger.handlers, *(pool_logger.handlers if pool_logger else [])]:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactConfirmationLinks())
        handler.addFilter(LogContext())


@worker_init.connect
@beat_init.connect
def _check_settings(**kwargs) -> None:
    from django.core.management.base import SystemCheckError

    from delist_portal.startup import require_valid_settings

    try:
        require_valid_settings()
    except SystemCheckError as e:
        # Celery logs and swallows exceptions from signal handlers; SystemExit gets through.
        print(e, file=sys.stderr)
        raise SystemExit(1) from e
