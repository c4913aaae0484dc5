"""Imports uploaded in the admin run in the worker, with their progress in the database.

The web request stores the file and returns at once, so a million-line upload never meets
gunicorn's timeout. The worker claims the job with a conditional UPDATE; a job whose worker
died (no heartbeat for IMPORT_STALE) or that was never picked up (broker away) is taken up
again by the sweep, and importing a list twice changes nothing, so a restart is safe.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from blocklist.importing import ImportStopped, ImportSummary, UnreadableList, import_file
from blocklist.models import ImportJob
from portal_lib.queueing import enqueue, enqueue_after_commit

logger = logging.getLogger(__name__)

IMPORT_STALE = timedelta(minutes=5)
# Larger uploads go through `manage.py import_blocklist FILE` on the server.
IMPORT_UPLOAD_MAX = 200 * 1024 * 1024

Status = ImportJob.Status


def import_job_create(*, name: str, data: bytes, source: str, actor: str) -> ImportJob:
    """Store an uploaded list and have the worker import it once this commits."""
    job = ImportJob.objects.create(name=name[:255], data=data, source=source, requested_by=actor)
    enqueue_after_commit("blocklist.import_job_run", job.pk, what=f"import {job.pk}")
    logger.info("import %s of %s (%d bytes) queued by %s", job.pk, job.name, len(data), actor)
    return job


def _summary_json(summary: ImportSummary) -> dict:
    return {
        "text": str(summary),
        "rejected": summary.rejected,
        "rejections": [list(r) for r in summary.rejections],
    }


def import_job_run(*, job_id: int, now: datetime | None = None) -> bool:
    """Import one queued (or abandoned) job; False when another worker has it or it is over."""
    now = now or timezone.now()
    claimed = (
        ImportJob.objects.filter(pk=job_id)
        .filter(Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=now - IMPORT_STALE))
        .update(status=Status.RUNNING, started_at=now, heartbeat_at=now, lines_done=0, error="")
    )
    if not claimed:
        return False
    job = ImportJob.objects.get(pk=job_id)

    def beat(line: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(lines_done=line, heartbeat_at=timezone.now())

    outcome: dict = {"status": Status.DONE}
    try:
        summary = import_file(io.BytesIO(bytes(job.data)), name=job.name, source=job.source, on_batch=beat)
        outcome["summary"] = _summary_json(summary)
    except UnreadableList as e:
        outcome.update(status=Status.FAILED, error=f"{e}; nothing was imported")
    except ImportStopped as e:
        outcome.update(status=Status.FAILED, error=str(e), summary=_summary_json(e.summary))
    except Exception as e:  # noqa: BLE001  (recorded for the desk; the batches before it are in)
        logger.exception("import %s failed", job_id)
        outcome.update(status=Status.FAILED, error=f"{type(e).__name__}: {e}")
    # The file is no longer needed: importing it again changes nothing anyway.
    ImportJob.objects.filter(pk=job_id).update(finished_at=timezone.now(), data=b"", **outcome)
    logger.info(
        "import %s of %s: %s", job_id, job.name, outcome.get("summary", {}).get("text") or outcome["status"]
    )
    return True


def import_jobs_resume(*, now: datetime | None = None) -> int:
    """Queue again the jobs no worker has: never picked up, or whose worker stopped beating."""
    now = now or timezone.now()
    waiting = ImportJob.objects.filter(
        Q(status=Status.QUEUED, created_at__lt=now - timedelta(minutes=1))
        | Q(status=Status.RUNNING, heartbeat_at__lt=now - IMPORT_STALE)
    )
    ids = list(waiting.values_list("pk", flat=True)[:20])
    for pk in ids:
        enqueue("blocklist.import_job_run", pk, what=f"import {pk}")
    return len(ids)
