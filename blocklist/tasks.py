"""Celery tasks of the blocklist: thin wrappers around its services."""

from celery import shared_task

from blocklist import import_jobs
from blocklist.exports import exports_refresh_if_changed


@shared_task(name="blocklist.exports_refresh", ignore_result=True)
def exports_refresh() -> int:
    return len(exports_refresh_if_changed())


@shared_task(name="blocklist.import_job_run", ignore_result=True)
def import_job_run(job_id: int) -> bool:
    return import_jobs.import_job_run(job_id=job_id)
