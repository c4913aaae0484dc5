"""/healthz tells ops whether the database, the cache and the broker answer."""

import pytest

from delist_portal import views
from delist_portal.celery import app as celery_app


@pytest.fixture(autouse=True)
def _fresh_answer(monkeypatch):
    # Each test probes anew: the view reuses an answer for HEALTH_TTL seconds.
    monkeypatch.setattr(views, "_last_answer", None)


def test_it_is_ok_when_everything_answers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok"}}


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
