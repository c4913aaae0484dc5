"""Uploads in the admin are imported by the worker: the web request stores the file and returns."""

from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from blocklist import import_jobs
from blocklist.models import Entry, ImportJob
from requests_app import services

IMPORT = reverse("admin:blocklist_entry_import")


def upload(admin_client, content: bytes, name="feed.txt"):
    return admin_client.post(IMPORT, {"file": SimpleUploadedFile(name, content), "source": "upload"})


def test_the_upload_returns_at_once_and_the_worker_imports_it(
    admin_client, db, django_capture_on_commit_callbacks
):
    response = upload(admin_client, b"5.61.14.7\n37.120.8.0/24\n")  # no worker ran yet
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:blocklist_entry_import_job", args=[job.pk]
    )
    assert job.status == ImportJob.Status.QUEUED and not Entry.objects.exists()
    page = admin_client.get(response["Location"]).content.decode()
    assert "waiting for the worker" in page and 'http-equiv="refresh"' in page

    assert import_jobs.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.lines_done == 2 and bytes(job.data) == b""
    assert Entry.objects.count() == 2
    page = admin_client.get(response["Location"]).content.decode()
    assert "added 2, unchanged 0" in page and 'http-equiv="refresh"' not in page
    assert not import_jobs.import_job_run(job_id=job.pk)  # done is done


def test_progress_is_written_batch_by_batch(admin_client, db, monkeypatch):
    monkeypatch.setattr("blocklist.importing.BATCH", 100)
    upload(admin_client, b"".join(f"81.2.{i // 250}.{i % 250 + 1}\n".encode() for i in range(350)))
    job = ImportJob.objects.get()
    seen = []
    real_import = import_jobs.import_file

    def watched(stream, *, on_batch, **kwargs):
        def beat(line):
            on_batch(line)
            seen.append(ImportJob.objects.get(pk=job.pk).lines_done)  # what the desk's page reads now

        return real_import(stream, on_batch=beat, **kwargs)

    monkeypatch.setattr(import_jobs, "import_file", watched)
    import_jobs.import_job_run(job_id=job.pk)
    assert seen == [100, 200, 300, 350]
    job.refresh_from_db()
    assert job.lines_done == 350 and job.heartbeat_at is not None and Entry.objects.count() == 350


def test_an_unreadable_upload_fails_with_a_reason_and_imports_nothing(admin_client, db):
    upload(admin_client, b"\x1f\x8b\x08\x00binary", name="feed.txt.gz")
    job = ImportJob.objects.get()
    import_jobs.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (
        job.status == ImportJob.Status.FAILED and "gzip" in job.error and "nothing was imported" in job.error
    )
    assert (
        "gzip"
        in admin_client.get(reverse("admin:blocklist_entry_import_job", args=[job.pk])).content.decode()
    )
    assert not Entry.objects.exists()


def test_a_job_whose_worker_died_is_taken_up_again_and_imports_once(
    admin_client, db, django_capture_on_commit_callbacks
):
    upload(admin_client, b"5.61.14.7\n")
    job = ImportJob.objects.get()
    long_ago = timezone.now() - timedelta(minutes=10)
    # A worker claimed it and died before finishing.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, heartbeat_at=long_ago)
    assert not import_jobs.import_job_run(
        job_id=job.pk, now=long_ago + timedelta(minutes=1)
    )  # still fresh then
    with django_capture_on_commit_callbacks(execute=True):
        result = services.sweep()
    assert "imports_resumed" not in result.failed_steps
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert Entry.objects.count() == 1 and Entry.objects.get().events.filter(action="listed").count() == 1


def test_a_job_never_picked_up_is_started_by_the_sweep(admin_client, db):
    upload(admin_client, b"5.61.14.7\n")  # the broker was away: nothing ran it
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    services.sweep()  # tasks run eagerly in tests: the resumed job is imported here
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and Entry.objects.count() == 1


def test_an_upload_over_the_size_limit_is_refused_with_a_clear_message(admin_client, db, monkeypatch):
    monkeypatch.setattr("blocklist.admin.IMPORT_UPLOAD_MAX", 10)
    response = upload(admin_client, b"5.61.14.7\n37.120.8.0/24\n")
    assert response.status_code == 200 and "manage.py import_blocklist" in response.content.decode()
    assert not ImportJob.objects.exists()
