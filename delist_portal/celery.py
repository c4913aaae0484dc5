"""The Celery app: `celery -A delist_portal worker` and `celery -A delist_portal beat`."""

import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import beat_init, worker_init

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
    sender.add_periodic_task(3600, sender.signature("requests_app.sessions_clear"), name="sessions_clear")
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


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
