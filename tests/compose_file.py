"""docker-compose.yml read as compose reads it, for tests that cannot run Docker.

Interpolation follows the Compose spec for what the file uses: `${NAME:-default}` and
`${NAME-default}` take the default (the tests stand for an empty .env), `$$` is a literal `$`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    env = env or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        return env.get(name, default if default is not None else "")

    return _VARIABLE.sub(replace, value)


def _interpolated(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    return node


def load(env: dict[str, str] | None = None) -> dict:
    """The compose file with merge keys resolved and variables interpolated."""
    return _interpolated(yaml.safe_load(COMPOSE_FILE.read_text()), env)


def raw() -> dict:
    """The compose file with merge keys resolved, variables as written."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def command_argv(service: dict) -> list[str]:
    """A service's command as the argv compose hands the container (no shell for a string)."""
    command = service["command"]
    return list(command) if isinstance(command, list) else shlex.split(command)


def healthcheck_argv(service: dict) -> list[str]:
    """A service's health check test as the argv Docker runs (CMD-SHELL goes through sh -c)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    assert kind == "CMD", f"unknown health check form {kind!r}"
    return rest
