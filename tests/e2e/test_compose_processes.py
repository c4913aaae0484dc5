"""The processes docker-compose.yml runs, run here without Docker, judged as compose judges them.

Each test takes its command and health check from the compose file itself (tests/compose_file.py)
and the environment the file gives the containers, with only what differs outside a container
swapped in: the database and Redis addresses, folders, and the secret files. Needs PostgreSQL
(DATABASE_URL) and Redis (REDIS_URL, whose db 5 these tests take); rbldnsd and dig for the last.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from blocklist.exports import exports_refresh
from tests.compose_file import ROOT, command_argv, healthcheck_argv, load
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent  # python, celery and gunicorn, as on the image's PATH
REDIS_DB = 5
ZONE = "bl.example.org"


@pytest.fixture(scope="module")
def services() -> dict:
    return load()["services"]


@pytest.fixture
def secret_files(tmp_path) -> dict[str, Path]:
    """The four secret files, as docker/make-secrets writes them (a value and a newline)."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    files = {}
    for name in ("secret_key", "postgres_password", "export_token", "metrics_token"):
        files[name] = folder / name
        files[name].write_text(secrets.token_urlsafe(48) + "\n")
    return files


@pytest.fixture
def compose_env(services, scratch_database, secret_files, tmp_path) -> dict[str, str]:
    """The portal services' environment from the compose file, pointed at this machine."""
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    # The scratch database, its password left for DATABASE_PASSWORD_FILE to supply (the local
    # server trusts loopback, so any password passes; what counts is that the URL is assembled).
    parts = urlsplit(scratch_database)
    netloc = f"{parts.username or 'postgres'}@{parts.hostname}:{parts.port or 5432}"
    database_url = urlunsplit(parts._replace(netloc=netloc))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_", "DATABASE_"))},
        **services["web"]["environment"],
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "VAR_DIR": str(tmp_path / "var"),
            "EXPORT_DIR": str(tmp_path / "exports"),
            "DELIST_SWEEP_INTERVAL": "1",
            "EMAIL_URL": "consolemail://",
        }
    )
    for variable, value in services["web"]["environment"].items():
        if variable.endswith("_FILE"):
            env[variable] = str(secret_files[Path(value).name])
    yield env
    redis.Redis.from_url(redis_url).flushdb()


def run(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


class Started:
    """A long-running service's command, stopped (and its log shown on failure) at the end."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = log
        self._file = open(log, "wb")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._file.close()
        print(self.log.read_text(errors="replace")[-4000:])  # captured: shown when a test fails


@pytest.fixture
def start(tmp_path):
    started: list[Started] = []

    def make(name: str, argv: list[str], env: dict) -> Started:
        started.append(Started(argv, env, tmp_path / f"{name}.log"))
        return started[-1]

    yield make
    for service in started:
        service.stop()


def test_the_migrate_one_shot_succeeds_and_can_run_again(services, compose_env):
    argv = command_argv(services["migrate"])
    first = run(argv, compose_env)
    assert first.returncode == 0, first.stderr
    assert "Applying requests_app." in first.stdout
    # Every `docker compose up` runs it again: with nothing to do it still exits 0.
    again = run(argv, compose_env)
    assert again.returncode == 0, again.stderr
    assert "No migrations to apply" in again.stdout


def test_a_failed_migration_exits_non_zero_so_compose_starts_nothing_else(services, compose_env):
    missing = compose_env["DATABASE_URL"].rsplit("/", 1)[0] + "/delist_no_such_database"
    result = run(command_argv(services["migrate"]), {**compose_env, "DATABASE_URL": missing})
    assert result.returncode != 0
    assert "delist_no_such_database" in result.stderr


def test_the_worker_health_check_passes_while_the_worker_answers_and_fails_after(
    services, compose_env, start
):
    assert run(command_argv(services["migrate"]), compose_env).returncode == 0
    # In a container HOSTNAME is the container's host name, which the worker's node name holds.
    env = {**compose_env, "HOSTNAME": socket.gethostname()}
    worker = start("worker", command_argv(services["worker"]), env)
    check = healthcheck_argv(services["worker"])

    def healthy() -> bool:
        assert worker.process.poll() is None, "the worker exited"
        return run(check, env, timeout=40).returncode == 0

    # Each check of a worker still starting waits out --timeout: look once it says it is ready.
    wait_for(lambda: " ready." in worker.log.read_text(errors="replace"), timeout=90, what="the worker")
    wait_for(healthy, timeout=60, what="the worker to answer its health check", interval=1)
    # Another node name is another container's worker: not this one's health.
    other = run(check, {**env, "HOSTNAME": "no-such-container"}, timeout=40)
    assert other.returncode != 0
    assert "No nodes replied" in other.stdout + other.stderr
    worker.stop()
    stopped = run(check, env, timeout=40)
    assert stopped.returncode != 0


def test_the_beat_health_check_follows_beat_ticking_and_stalling(services, compose_env, start):
    check = healthcheck_argv(services["beat"])
    before = run(check, compose_env)
    assert before.returncode == 1 and "has not started" in before.stderr
    beat = start("beat", command_argv(services["beat"]), compose_env)

    def healthy() -> bool:
        assert beat.process.poll() is None, "beat exited"
        return run(check, compose_env).returncode == 0

    wait_for(healthy, timeout=60, what="beat's health check to pass", interval=1)
    # Beat rewrites the schedule after each task it sends (every DELIST_SWEEP_INTERVAL = 1 s).
    schedule = Path(compose_env["VAR_DIR"]) / "celerybeat-schedule"
    files = [p for p in schedule.parent.iterdir() if p.name.startswith(schedule.name)]
    first = max(p.stat().st_mtime for p in files)
    wait_for(
        lambda: max(p.stat().st_mtime for p in files if p.exists()) > first,
        timeout=10,
        what="beat to rewrite its schedule",
    )
    # A hung beat (stopped, not dead: the container would still be "running") turns unhealthy
    # once two intervals and the margin (32 s here) pass without a write.
    os.killpg(beat.process.pid, signal.SIGSTOP)
    stalled = wait_for(
        lambda: (result := run(check, compose_env)).returncode != 0 and result,
        timeout=60,
        what="the health check to see beat stalled",
        interval=2,
    )
    assert "not ticking" in stalled.stderr


@pytest.fixture
def served_export_dir(settings):
    # rbldnsd drops to user rbldns: every folder above the file must be traversable by all.
    folder = Path(tempfile.mkdtemp(prefix="delist-compose-"))
    folder.chmod(0o755)
    settings.EXPORT_DIR = str(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _tool(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or ""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_rbldnsd_container_waits_for_the_export_then_serves_the_zone(
    services, listing, served_export_dir, start
):
    if not (_tool("rbldnsd") and _tool("dig")):
        pytest.skip("rbldnsd and dig are not installed (run .ci/mail-server-tools.sh)")
    port = _free_udp_port()
    env = {
        "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '')}",
        "DNSBL_ZONE": services["rbldnsd"]["environment"]["DNSBL_ZONE"],
        "RBLDNSD_FILE": str(served_export_dir / "blocklist.rbldnsd"),
        "RBLDNSD_BIND": f"127.0.0.1/{port}",
        "RBLDNSD_CHECK": "1",
    }
    server = start("rbldnsd", ["sh", str(ROOT / "docker" / "rbldnsd-start")], env)
    wait_for(lambda: "waiting for" in server.log.read_text(), timeout=10, what="rbldnsd-start to wait")
    time.sleep(1.5)
    assert server.process.poll() is None, "rbldnsd-start gave up before the export existed"

    listing("5.61.14.7", reason="spam trap hits")
    exports_refresh()  # what the worker does after each change, and in its first sweep

    def answer() -> list[str]:
        result = run(
            [
                _tool("dig"),
                "@127.0.0.1",
                "-p",
                str(port),
                "+short",
                "+time=1",
                "+tries=1",
                f"7.14.61.5.{ZONE}",
            ],
            env,
            timeout=10,
        )
        lines = result.stdout.splitlines()
        # Before rbldnsd listens dig says ";; connection timed out": no answer yet.
        return [] if any(";;" in line for line in lines) else lines

    assert wait_for(answer, timeout=20, what="rbldnsd to answer for 5.61.14.7") == ["127.0.0.2"]
    assert services["rbldnsd"]["environment"]["DNSBL_ZONE"] == ZONE
