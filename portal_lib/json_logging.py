"""LOG_FORMAT=json: one JSON object per log line, for web (Django, gunicorn), worker and beat.

Each line holds `time` (ISO 8601, UTC), `level`, `logger`, `message` and the record's extra
fields (`extra=` on the log call, the request id, a task's id). Every string in it passes
through the confirmation-link redaction, tracebacks included.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from portal_lib.log_redaction import redact

LOG_FORMATS = ("plain", "json")

# Extra attributes that are objects, not facts: Django's request (its repr holds the path, and
# so a link's token), runserver's server_time (the same moment as `time`).
_SKIPPED = ["request", "server_time"]


def log_format(value: str | None) -> str:
    """LOG_FORMAT read strictly: plain (the default) or json; ValueError otherwise."""
    value = "plain" if value is None or value == "" else value
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be 'plain' or 'json', not {value!r}")
    return value


def _clean(value: Any) -> Any:
    """The value as JSON holds it, every string redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact(str(value))


class JsonFormatter(_JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *_SKIPPED])
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _clean(value) for key, value in log_data.items()}
