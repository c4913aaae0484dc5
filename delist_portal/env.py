"""Strict readers for the environment variables of the contract.

A malformed value stops start-up with a message naming the variable, so a typo in
a deployment never silently turns into a default.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured


def envsecret(name: str, default: str | None = None) -> str | None:
    """Return NAME, or the contents of the file named by NAME_FILE (Docker and compose secrets).

    The file's trailing line break is dropped (an editor or `echo` adds one); anything else in it
    is the value. A file that is missing, unreadable or empty stops start-up, and so does setting
    both NAME and NAME_FILE: which one was meant is anyone's guess. An empty NAME or NAME_FILE
    counts as unset, as everywhere in this module.
    """
    path = os.getenv(f"{name}_FILE")
    value = os.getenv(name)
    if not path:
        return default if value is None else value
    if value:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set: keep one of them")
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
    except OSError as e:
        raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise ImproperlyConfigured(f"{name}_FILE: {path} is not UTF-8 text") from None
    content = content.rstrip("\r\n")
    if not content:
        raise ImproperlyConfigured(f"{name}_FILE: {path} is empty")
    return content


def envdatabase_url() -> str | None:
    """DATABASE_URL, with DATABASE_PASSWORD (or DATABASE_PASSWORD_FILE) put in as its password.

    So the password can come from a secret file while the rest of the URL stays plain
    configuration. The password goes in percent-encoded, so any character is fine in it.
    """
    url = envsecret("DATABASE_URL")
    password = envsecret("DATABASE_PASSWORD")
    if not password:
        return url
    if not url:
        raise ImproperlyConfigured("DATABASE_PASSWORD is set but DATABASE_URL is not")
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ImproperlyConfigured("DATABASE_PASSWORD needs a postgres:// DATABASE_URL")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if ":" in userinfo:
        raise ImproperlyConfigured(
            "DATABASE_URL holds a password and DATABASE_PASSWORD is set too: keep one of them"
        )
    # Without a user in the URL (postgres://host/db) the server takes the client's user name.
    return f"{scheme}://{userinfo}:{quote(password, safe='')}@{hostport}{slash}{path}"


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
