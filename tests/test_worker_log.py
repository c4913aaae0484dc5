"""The worker's log on a quiet portal stays quiet: no line every few seconds for a sweep that did
nothing, and a line for each sweep that did something."""

from __future__ import annotations

import logging

import pytest
from celery.app import trace

from delist_portal.celery import app
from requests_app import services
from requests_app.models import State
from tests.conftest import LISTED_IP

ROUTINE_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace", "celery.worker.request")


@pytest.fixture
def info_logs(caplog):
    caplog.set_level(logging.INFO)
    for name in ("requests_app", *ROUTINE_LOGGERS):
        caplog.set_level(logging.INFO, logger=name)
    return caplog


def lines(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records]


def test_an_empty_sweep_logs_nothing(db, listed, info_logs):
    result = services.sweep()
    assert not result.did_something
    assert lines(info_logs) == []


def test_a_sweep_that_did_something_logs_one_line(confirmed, info_logs, settings):
    settings.DELIST_PROPAGATION_DELAY = 0
    assert confirmed(ip=LISTED_IP).state == State.APPROVED
    info_logs.clear()
    services.sweep()
    sweep_lines = [line for line in lines(info_logs) if line.startswith("requests_app.services: sweep:")]
    assert sweep_lines == [
        "requests_app.services: sweep: 1 delisting(s) applied, 0 request(s) expired, "
        "0 entry(ies) expired, 0 mail(s) given up"
    ]


def celery_routine_lines(task_name: str, level: int = logging.INFO) -> None:
    """What beat and the worker log, in Celery's own words, for one run of a task."""
    logging.getLogger("celery.beat").log(level, "Scheduler: Sending due task %s (%s)", "entry", task_name)
    context = {"id": "6f1c", "name": task_name, "return_value": "0", "runtime": 0.01}
    logging.getLogger("celery.worker.strategy").log(level, trace.LOG_RECEIVED, context)
    logging.getLogger("celery.app.trace").log(level, trace.LOG_SUCCESS, context)
    # A run that expired in the queue (periodic tasks expire after one interval) on a busy machine.
    logging.getLogger("celery.worker.request").log(
        level, "Discarding revoked task: %s[%s]", task_name, "7a2d"
    )


def test_celerys_routine_lines_for_periodic_tasks_are_dropped(info_logs):
    periodic = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"requests_app.sweep", "requests_app.mails_send_due"} <= periodic
    for name in periodic:
        celery_routine_lines(name)
    assert lines(info_logs) == []


def test_celerys_lines_for_other_tasks_and_for_failures_stay(info_logs):
    celery_routine_lines("requests_app.mail_send")
    celery_routine_lines("requests_app.sweep", level=logging.ERROR)
    assert len(info_logs.records) == 8
    assert "Task requests_app.mail_send[6f1c] received" in lines(info_logs)[1]
    assert {r.levelno for r in info_logs.records[4:]} == {logging.ERROR}
