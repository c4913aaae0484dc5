"""Keep confirmation tokens out of logs: a path `/confirm/<token>` is logged as `/confirm/[redacted]`.

Used by the logging config (Django's `django.request` 404 warnings, runserver's request lines)
and by gunicorn's access log (`gunicorn.conf.py`).
"""

from __future__ import annotations

import logging
import re

_CONFIRM_LINK = re.compile(r"(/confirm/)[^\s\"'?#/]+")


def redact(text: str) -> str:
    return _CONFIRM_LINK.sub(r"\1[redacted]", text)


class RedactConfirmationLinks(logging.Filter):
    """A filter for handlers: rewrites the formatted message when it holds a link's token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
