"""Strict readers for the environment variables of the contract.

A malformed value stops start-up with a message naming the variable, so a typo in
a deployment never silently turns into a default.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def envsecret(name: str, default: str | None = None) -> str | None:
    """Return NAME, or the contents of the file named by NAME_FILE."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {e.strerror}") from e
    return os.getenv(name, default)


def envstr(name: str, default: str) -> str:
    value = envsecret(name)
    return default if value is None or value == "" else value


def envbool(name: str, default: bool) -> bool:
    value = envsecret(name)
    if value is None or value == "":
        return default
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise ImproperlyConfigured(f"{name} must be 'true' or 'false', not {value!r}")


def envint(name: str, default: int) -> int:
    """An integer; range checks live in system checks so tests can exercise them."""
    value = envsecret(name)
    if value is None or value == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


def envrate(name: str, default: str) -> str:
    """A rate in django-ratelimit's form (10/h, 120/m, 500/2h), checked at start-up."""
    from portal_lib.rates import parse_rate

    value = envstr(name, default).strip()
    try:
        parse_rate(value)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name}: {e}") from None
    return value
