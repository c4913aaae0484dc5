"""Parsing what machines send to the write API: a small JSON object, checked field by field.

Anything wrong becomes a BadInput naming each field's problem, so the view answers 400 and
nothing changes; nothing a client sends can reach the database unchecked (NUL bytes, lone
surrogates, numbers where text belongs, a year the database cannot hold).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from blocklist.ip import parse_network
from blocklist.models import CODE_CHOICES

# An entry's fields fit in a few kilobytes; anything much bigger is not a mistake.
MAX_BODY = 16 * 1024
CODES = {code for code, _label in CODE_CHOICES}
TEXT_LIMITS = {"reason": 500, "source": 100}
DELIST_REASON_LIMIT = 1000


class BadInput(Exception):
    def __init__(self, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or BadInput."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > MAX_BODY:
        raise BadInput(f"the body must be JSON of at most {MAX_BODY} bytes")
    body = request.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise BadInput(f"the body must be JSON of at most {MAX_BODY} bytes")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadInput("the body is not valid JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise BadInput("the body must be a JSON object")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def entry_fields(data: dict[str, Any], *, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """The named fields of data, parsed; BadInput listing every problem at once."""
    return _fields(data, allowed=allowed, required=required, parsers=_PARSERS)


def delist_fields(data: dict[str, Any]) -> dict:
    """A delisting's body: {"reason": "..."}, the reason required."""
    return _fields(data, allowed=("reason",), required=("reason",), parsers={"reason": _delist_reason})


def _fields(data, *, allowed, required, parsers) -> dict:
    errors: dict[str, list[str]] = {}
    for name in data:
        if name not in allowed:
            errors[name] = [f"unknown field; the fields are {', '.join(allowed)}"]
    for name in required:
        if name not in data:
            errors[name] = ["this field is required"]
    parsed = {}
    for name in allowed:
        if name not in data or name in errors:
            continue
        try:
            parsed[name] = parsers[name](data[name])
        except ValidationError as e:
            errors[name] = [str(message) for message in e.messages]
    if errors:
        raise BadInput("some fields are invalid", errors)
    return parsed


def _text(value: Any, *, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationError("must be a string")
    if len(value) > limit:
        raise ValidationError(f"must be at most {limit} characters")
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must be valid Unicode (no lone surrogates)") from None
    return value


def _network(value: Any):
    return parse_network(_text(value, limit=64))


def _code(value: Any) -> str:
    if not isinstance(value, str) or value not in CODES:
        raise ValidationError("must be a code from 5.7.606 to 5.7.649")
    return value


def _self_service(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false")
    return value


def _expires_at(value: Any) -> datetime | None:
    if value is None:
        return None
    text = _text(value, limit=64)
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is None:
                raise ValidationError("must be an ISO 8601 date or time, or null")
            moment = datetime.combine(day, time.min)
        moment = moment.astimezone(UTC) if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # well formed, but no such day or time (2030-02-30)
        raise ValidationError("is not a valid date or time") from None
    if moment <= timezone.now():
        raise ValidationError("must be in the future (to end a listing now, delist it)")
    return moment


def _delist_reason(value: Any) -> str:
    reason = _text(value, limit=DELIST_REASON_LIMIT)
    if not reason.strip():
        raise ValidationError("must say why")
    return reason


_PARSERS = {
    "network": _network,
    "reason": lambda value: _text(value, limit=TEXT_LIMITS["reason"]),
    "source": lambda value: _text(value, limit=TEXT_LIMITS["source"]),
    "code": _code,
    "expires_at": _expires_at,
    "self_service": _self_service,
}
