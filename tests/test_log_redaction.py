"""Confirmation tokens never reach a log, and sessions that remember opened links do not linger."""

import io
import logging
from datetime import timedelta

from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from gunicorn.config import Config

from portal_lib.gunicorn_logging import RedactingLogger
from requests_app.tasks import sessions_clear

TOKEN = "Zm9vYmFyYmF6cXV4cXV1eA.c2VjcmV0c2VjcmV0c2VjcmV0"


def console_output(emit) -> str:
    """What the portal's console handler (the one every logger ends in) writes while emit runs."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    stream, handler.stream = handler.stream, io.StringIO()
    try:
        emit()
        return handler.stream.getvalue()
    finally:
        handler.stream = stream


def test_djangos_404_warning_for_a_link_shows_no_token(client, db):
    written = console_output(lambda: client.get(f"/confirm/{TOKEN}"))
    assert "Not Found: /confirm/[redacted]" in written
    assert TOKEN not in written and TOKEN.split(".")[1] not in written


def test_gunicorns_access_log_shows_no_token():
    logger = RedactingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/confirm/{TOKEN}",
        "PATH_INFO": f"/confirm/{TOKEN}",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": f"https://delist.example.org/confirm/{TOKEN}",
    }

    class Response:
        status = "302 Found"
        sent = 0
        headers = ()

    class Request:
        headers = ()

    atoms = logger.atoms(Response(), Request(), environ, timedelta(milliseconds=3))
    line = logger.cfg.access_log_format % atoms
    assert "/confirm/[redacted]" in line and TOKEN not in line


def test_expired_sessions_are_cleared_on_a_schedule(db):
    from delist_portal.celery import app

    app.loader.import_default_modules()
    app.on_after_configure.send(sender=app)
    assert any(entry["task"] == "requests_app.sessions_clear" for entry in app.conf.beat_schedule.values())
    old, fresh = SessionStore(), SessionStore()
    old["delist_confirmations"] = {"1": "hash"}
    old.create()
    fresh.create()
    Session.objects.filter(session_key=old.session_key).update(expire_date=timezone.now() - timedelta(days=1))
    sessions_clear()
    assert list(Session.objects.values_list("session_key", flat=True)) == [fresh.session_key]
