"""Running the README's `./dev` script as a person would: a clean environment (nothing of the test
settings), a VAR_DIR of the test's own, and a look for processes it left behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "dev"
# What the test settings or the machine may have set, which a fresh shell would not have.
NOT_INHERITED = (
    "DEBUG",
    "HTTPS",
    "SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "REDIS_URL",
    "EMAIL_URL",
    "VAR_DIR",
    "PORT",
    "PORTAL_BASE_URL",
    "ALLOWED_HOSTS",
    "DJANGO_",
    "DELIST_",
)


def dev_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    return {**env, "VAR_DIR": str(var_dir), **extra}


def dev(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DEV), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line holds text."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def leftovers(text: str, *, grace: float = 5) -> list[tuple[int, str]]:
    """The processes still mentioning text after a short grace (a process may be exiting)."""
    deadline = time.monotonic() + grace
    while (found := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found
