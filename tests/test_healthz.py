"""/healthz tells ops whether the database, the cache and the broker answer, and whether the
sweep still runs."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from delist_portal import views
from delist_portal.celery import app as celery_app
from requests_app import services

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_answer(monkeypatch):
    # Each test probes anew: the view reuses an answer for HEALTH_TTL seconds.
    monkeypatch.setattr(views, "_last_answer", None)
    # However long the suite ran before: this test's process has just started.
    monkeypatch.setattr(views, "_started_at", timezone.now())


def test_it_is_ok_when_everything_answers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok", "sweep": "ok"},
    }


def test_it_fails_with_503_when_the_broker_is_away(client, db):
    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"
    try:
        response = client.get("/healthz")
    finally:
        celery_app.conf.broker_url = saved
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("fail")


def test_an_answer_is_reused_for_a_few_seconds_then_probed_again(client, db, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(views, "_clock", lambda: clock[0])
    assert client.get("/healthz").status_code == 200
    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"
    try:
        clock[0] += views.HEALTH_TTL - 1
        assert client.get("/healthz").status_code == 200  # the answer of a moment ago
        clock[0] += 2
        assert client.get("/healthz").status_code == 503  # probed again: the broker is away
    finally:
        celery_app.conf.broker_url = saved


def _health_at(client, monkeypatch, when: datetime):
    monkeypatch.setattr(views, "_last_answer", None)  # probe anew at this moment
    with time_machine.travel(when, tick=False):
        return client.get("/healthz")


def test_the_sweep_check_fails_once_three_sweep_intervals_pass_without_a_sweep(
    client, db, monkeypatch, settings
):
    settings.DELIST_SWEEP_INTERVAL = 30
    with time_machine.travel(T0, tick=False):
        services.sweep()

    # Two sweeps missed is a busy worker; the third is a dead beat.
    response = _health_at(client, monkeypatch, T0 + timedelta(seconds=90))
    assert response.status_code == 200
    assert response.json()["checks"]["sweep"] == "ok"
    response = _health_at(client, monkeypatch, T0 + timedelta(seconds=91))
    assert response.status_code == 503
    assert response.json()["status"] == "fail"
    assert response.json()["checks"]["sweep"] == "fail: the last sweep finished 91 s ago"
    assert response.json()["checks"]["database"] == "ok"

    # The beat comes back: the next sweep makes it ok again.
    with time_machine.travel(T0 + timedelta(seconds=120), tick=False):
        services.sweep()
    assert _health_at(client, monkeypatch, T0 + timedelta(seconds=125)).status_code == 200


def test_a_sweep_whose_steps_fail_still_counts_as_a_beat(client, db, monkeypatch, settings):
    # The beat is alive: a failing step is the log's business (and /metrics'), not a dead worker.
    def broken(*, now):
        raise RuntimeError("export folder gone")

    monkeypatch.setattr(services, "import_jobs_resume", broken)
    with time_machine.travel(T0, tick=False):
        assert services.sweep().failed_steps == ["imports_resumed"]
    assert _health_at(client, monkeypatch, T0 + timedelta(seconds=60)).json()["checks"]["sweep"] == "ok"


def test_a_fresh_install_gets_three_intervals_from_start_up_for_its_first_sweep(
    client, db, monkeypatch, settings
):
    settings.DELIST_SWEEP_INTERVAL = 40
    monkeypatch.setattr(views, "_started_at", T0)  # no sweep ever ran on this database

    response = _health_at(client, monkeypatch, T0 + timedelta(seconds=120))
    assert response.status_code == 200
    assert response.json()["checks"]["sweep"] == "ok"
    response = _health_at(client, monkeypatch, T0 + timedelta(seconds=121))
    assert response.status_code == 503
    assert response.json()["checks"]["sweep"] == "fail: no sweep has run yet"


def test_a_short_sweep_interval_still_allows_a_minute_before_failing(client, db, monkeypatch, settings):
    settings.DELIST_SWEEP_INTERVAL = 1  # a lab's: three missed sweeps would be three seconds
    with time_machine.travel(T0, tick=False):
        services.sweep()
    assert _health_at(client, monkeypatch, T0 + timedelta(seconds=60)).status_code == 200
    assert _health_at(client, monkeypatch, T0 + timedelta(seconds=61)).status_code == 503
