"""LOG_FORMAT=json: every line a real gunicorn or Celery worker logs is one JSON object, with the
request id, the state changes and the sweep's figures as fields, and no confirmation token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN_IN_PATH = "sEcReTtOkEn1234567890abcdef"


@pytest.fixture(scope="module")
def portal_env(tmp_path_factory) -> dict[str, str]:
    """The embedded default (SQLite, filesystem broker) in a folder of its own, migrated."""
    var = tmp_path_factory.mktemp("json-logs")
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DELIST_", "DJANGO_", "PROMETHEUS_", "LOG_"))
            and k not in ("DATABASE_URL", "REDIS_URL")
        },
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "json-logs-tests-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "VAR_DIR": str(var),
        "LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return env


def json_lines(text: str) -> list[dict]:
    """Every line parsed; a line that is not one JSON object fails the test, naming it."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- all of it:\n{text}")
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    return records


def wait_until(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.parametrize(
    "command",
    [["python", "manage.py", "check"], ["gunicorn", "delist_portal.wsgi"]],
    ids=["manage.py", "gunicorn"],
)
def test_a_log_format_other_than_plain_or_json_stops_start_up(command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELIST_")}
    env.update({"DJANGO_SETTINGS_MODULE": "delist_portal.settings", "DEBUG": "true", "LOG_FORMAT": "JSON"})
    executable = sys.executable if command[0] == "python" else str(BIN / command[0])
    result = subprocess.run(
        [executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json', not 'JSON'" in result.stderr


def test_gunicorn_and_django_log_json_lines_with_the_request_id_and_without_tokens(portal_env, tmp_path):
    import requests

    port = free_port()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        gunicorn = subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "delist_portal.wsgi"],
            cwd=ROOT,
            env=portal_env,
            stdout=out,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/static/css/portal.css", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=60, what="gunicorn to answer")
        # A proxy's id is kept; django.request logs the 404 with the path, token and all.
        missing = requests.get(
            f"{base}/nowhere/confirm/{TOKEN_IN_PATH}", headers={"X-Request-ID": "proxy-id-42"}, timeout=10
        )
        # An id that is no id is replaced with one of our own.
        fresh = requests.get(f"{base}/", headers={"X-Request-ID": "two words"}, timeout=10)
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "proxy-id-42"
    assert fresh.status_code == 200 and len(fresh.headers["X-Request-ID"]) == 32
    out, err = stdout.read_text(), stderr.read_text()
    assert TOKEN_IN_PATH not in out + err

    access = json_lines(out)
    by_id = {record.get("request_id"): record for record in access if record["logger"] == "gunicorn.access"}
    assert by_id["proxy-id-42"]["status"] == 404
    assert by_id["proxy-id-42"]["path"] == "/nowhere/confirm/[redacted]"
    assert by_id["proxy-id-42"]["method"] == "GET"
    assert by_id[fresh.headers["X-Request-ID"]]["status"] == 200

    errors = json_lines(err)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in errors)
    not_found = [r for r in errors if r["logger"] == "django.request"]
    assert len(not_found) == 1
    assert not_found[0]["message"] == "Not Found: /nowhere/confirm/[redacted]"
    assert not_found[0]["request_id"] == "proxy-id-42"
    assert not_found[0]["status_code"] == 404
    assert not_found[0]["level"] == "WARNING"


SEED = """
from datetime import timedelta
from django.utils import timezone
from blocklist.ip import parse_network
from blocklist.services import entry_list
from requests_app.models import DelistRequest
entry, _ = entry_list(parse_network("5.61.14.7"), actor="admin")
now = timezone.now()
request = DelistRequest.objects.create(
    email="postmaster@mail.example.com", mailbox="postmaster@mail.example.com",
    email_domain="mail.example.com", ip="5.61.14.7", state="approved", decided_by="self-service",
    confirmed_at=now, decided_at=now, effective_at=now - timedelta(seconds=5),
)
request.entries.set([entry])
print(request.pk)
"""


def test_the_celery_worker_logs_json_lines_with_the_sweeps_figures_and_the_task(portal_env, tmp_path):
    seeded = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED],
        cwd=ROOT,
        env=portal_env,
        capture_output=True,
        text=True,
        check=True,
    )
    request_id = int(seeded.stdout.split()[-1])
    env = {
        **portal_env,
        "DELIST_SWEEP_INTERVAL": "1",
        # Tests run as root, and Celery warns about that before any logging is set up (the
        # image runs it as an unprivileged user).
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    stderr = tmp_path / "worker.log"
    with stderr.open("w") as err:
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "delist_portal", "worker", "-B", "--concurrency", "1"]
            + ["--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # the start-up banner, which is no log
            stderr=err,
        )
    try:
        wait_until(lambda: '"delistings_applied": 1' in stderr.read_text(), timeout=90, what="the sweep")
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    records = json_lines(stderr.read_text())
    assert any(r["logger"] == "celery.apps.worker" and r["message"].endswith("ready.") for r in records)
    sweep = next(r for r in records if r["message"].startswith("sweep: "))
    assert sweep["delistings_applied"] == 1
    assert sweep["failed_steps"] == []
    assert sweep["task_name"] == "requests_app.sweep" and sweep["task_id"]
    completed = next(r for r in records if r.get("state") == "completed")
    assert completed["delist_requests"] == [request_id]
    assert completed["logger"] == "requests_app.services"
    assert completed["task_id"] == sweep["task_id"]
