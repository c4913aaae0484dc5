"""One id per HTTP request, on the response (`X-Request-ID`) and on every log line it causes.

A proxy's id is kept when it looks like one (letters, digits and `-_.:`, up to 128), so one
request can be followed from the proxy's log to ours; anything else is replaced with a new id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_for(header: str | None) -> str:
    if header and _SANE.match(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.headers.get(HEADER))
        request.request_id = request_id
        # Kept until the response is closed (_forget): Django logs a 4xx or 5xx after every
        # middleware has returned.
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _forget(**kwargs) -> None:
    _current.set(None)


request_finished.connect(_forget, dispatch_uid="portal_lib.request_id")


class LogContext(logging.Filter):
    """A filter for handlers: adds `request_id` in a web request, `task_id` and `task_name` in a
    Celery task, and nothing elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None:
            record.request_id = request_id
        task = _current_task()
        if task is not None and task.request.id:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


def _current_task():
    from celery import current_task

    # A proxy that is falsy outside a task.
    return current_task if current_task else None
