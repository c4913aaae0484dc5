"""Real processes for end-to-end tests: a scratch PostgreSQL database, gunicorn, Celery, SMTP.

These tests drive the portal from outside, as a sender and a mail server would, so
they need DATABASE_URL (PostgreSQL) and REDIS_URL; .ci/run provides both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
import redis

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"  # git-ignored
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright's own download does not work here
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian Chromium driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (or bash .ci/browser-tools.sh)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API keeps an event loop in this thread, which Django's guard against
    # database calls from async code mistakes for one: the tests themselves are plain sync code.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def scratch_database():
    """A fresh PostgreSQL database beside the one DATABASE_URL names; dropped afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not os.environ.get("REDIS_URL"):
        pytest.skip("end-to-end tests need DATABASE_URL (PostgreSQL) and REDIS_URL")
    parts = urlparse(url)
    name = f"delist_e2e_{os.getpid()}"
    admin = psycopg2.connect(urlunparse(parts._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield urlunparse(parts._replace(path=f"/{name}"))
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


class Portal:
    """The portal's processes, started as ops would start them, on loopback ports."""

    def __init__(self, env: dict, workdir: Path):
        self.env = env
        self.workdir = workdir
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.base_url = env["PORTAL_BASE_URL"]

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def start(self, name: str, *argv: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append((name, process))

    def start_all(self) -> None:
        port = urlparse(self.base_url).port
        self.start(
            "gunicorn",
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
            "delist_portal.wsgi",
        )
        self.start(
            "worker",
            str(BIN / "celery"),
            "-A",
            "delist_portal",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
        )
        self.start(
            "beat",
            str(BIN / "celery"),
            "-A",
            "delist_portal",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(self.workdir / "celerybeat-schedule"),
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.workdir / f'{name}.log').read_text(errors='replace')[-4000:]}"
            for name, _p in self.processes
        )

    def stop(self) -> None:
        for _name, process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def portal_env(scratch_database, smtp_inbox, tmp_path):
    port = free_port()
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/13"
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "end-to-end-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": scratch_database,
        "REDIS_URL": redis_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_inbox.port}",
        "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
        "VAR_DIR": str(tmp_path / "var"),
        # Seconds, so a test sees the whole delay pass.
        "DELIST_PROPAGATION_DELAY": "2",
        "DELIST_SWEEP_INTERVAL": "1",
    }
    return env


@pytest.fixture
def portal(portal_env, tmp_path, request):
    """Migrated, started and healthy; logs printed when the test fails."""
    import requests

    instance = Portal(portal_env, tmp_path)
    instance.manage("migrate", "--no-input")
    instance.start_all()
    try:
        wait_for(lambda: _healthy(requests, instance.base_url), timeout=60, what="/healthz to answer ok")
        yield instance
    finally:
        instance.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(instance.logs())


def _healthy(requests, base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:  # not up yet, or busy booting: ask again
        return False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
