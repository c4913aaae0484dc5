"""Services a fault test may stop, flush or restart, each its own instance on a loopback port:
a Redis, a PostgreSQL cluster, an SMTP server that goes away and comes back. The shared
PostgreSQL (5432) and Redis (6379) are never stopped, flushed or restarted.

Each test counts what was owed, received, lost and doubled (`Tally`) and fails on a loss or a double.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from aiosmtpd.controller import Controller

from tests.conftest import Inbox, free_port
from tests.e2e.conftest import (  # noqa: F401  (fixtures and the hook that keeps test reports)
    BIN,
    Portal,
    pytest_runtest_makereport,
    scratch_database,
    wait_for,
)
from tests.e2e.test_delist_flow import csrf_token, text_part

PG_ETC = Path("/etc/postgresql")
# Answers must come back while a service is away, not hang on it.
ANSWER_WITHIN = 15


# --- services of our own ------------------------------------------------------------


class OwnRedis:
    """A redis-server in the foreground, without persistence: a restart starts it empty."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115  (closed with the process)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.ping, timeout=10, what=f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10
        )
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class OwnPostgres:
    """A cluster of its own (pg_createcluster), named after this run so no two runs share one."""

    PREFIX = "delistfault"

    def __init__(self, version: str, pid: int | None = None):
        self.version = version
        self.name = f"{self.PREFIX}{pid or os.getpid()}"
        self.port = free_port()

    @classmethod
    def drop_orphans(cls, version: str) -> None:
        """Drop clusters left by runs that were killed before their fixture could (their pid is gone)."""
        listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines():
            name = line.split()[1]
            if re.fullmatch(rf"{cls.PREFIX}\d+", name) and not _alive(int(name[len(cls.PREFIX) :])):
                cls(version, int(name[len(cls.PREFIX) :])).drop()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.name}"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"

    def ctl(self, action: str) -> None:
        self._run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action)

    def accepts_connections(self) -> bool:
        ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(ready, timeout=10).returncode == 0

    def create(self) -> None:
        self._run("pg_createcluster", self.version, self.name, "--port", str(self.port), "--", "--auth=trust")
        self.ctl("start")
        wait_for(self.accepts_connections, timeout=30, what="the new cluster to accept connections")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.name)

    def drop(self) -> None:
        subprocess.run(
            ["pg_dropcluster", "--stop", self.version, self.name], capture_output=True, timeout=120
        )

    def log(self) -> str:
        path = Path(f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log")
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class SlowInbox(Inbox):
    """An inbox that may wait before it says 250, having taken the message: the window in which a
    client dies between the server's acceptance and its own record of it."""

    reply_delay = 0.0

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.reply_delay)
        return reply


class SmtpServer:
    """aiosmtpd on a fixed loopback port that can go away and come back; one inbox throughout."""

    def __init__(self):
        self.inbox = SlowInbox()
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def messages(self) -> list:
        return self.inbox.messages

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def own_redis(tmp_path, request):
    (tmp_path / "redis").mkdir()
    instance = OwnRedis(tmp_path / "redis")
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        if _failed(request):
            print("--- redis ---\n" + (instance.workdir / "redis.log").read_text(errors="replace")[-3000:])


@pytest.fixture
def own_postgres(request):
    versions = sorted(os.listdir(PG_ETC), key=int) if PG_ETC.is_dir() else []
    if os.geteuid() != 0 or not versions:
        pytest.skip("own PostgreSQL clusters need root and postgresql-common (pg_createcluster)")
    OwnPostgres.drop_orphans(versions[-1])
    instance = OwnPostgres(versions[-1])
    try:
        instance.create()
        yield instance
    finally:
        if _failed(request):
            print(f"--- postgresql {instance.name} ---\n{instance.log()}")
        instance.drop()


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- the portal -----------------------------------------------------------------------


class FaultPortal(Portal):
    """The e2e Portal, plus what a fault test needs: single processes to kill, SQL, health."""

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        # A connection per call: the cluster may have restarted since the last one.
        with psycopg2.connect(self.env["DATABASE_URL"], connect_timeout=3) as conn, conn.cursor() as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall() if cursor.description else []
        conn.close()
        return rows

    def count(self, query: str, params: tuple = ()) -> int:
        return self.sql(query, params)[0][0]

    def list_ips(self, ips: list[str]) -> None:
        listing = self.workdir / "listing.txt"
        listing.write_text("".join(f"{ip}\n" for ip in ips))
        assert f"added {len(ips)}" in self.manage("import_blocklist", str(listing))

    def start_worker(self, name: str, node: str) -> None:
        celery = [str(BIN / "celery"), "-A", "delist_portal", "worker", "-n", f"{node}@%h"]
        self.start(name, *celery, "--concurrency", "2", "--loglevel", "INFO")

    def start_beat(self) -> None:
        schedule = str(self.workdir / "celerybeat-schedule")
        self.start("beat", str(BIN / "celery"), "-A", "delist_portal", "beat", "--schedule", schedule)

    def kill(self, name: str) -> None:
        """SIGKILL, to the whole process group: a worker's pool children die with it."""
        process = dict(self.processes)[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def running(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes}

    def healthz(self) -> tuple[int | None, dict]:
        try:
            response = requests.get(f"{self.base_url}/healthz", timeout=ANSWER_WITHIN)
        except requests.ConnectionError:
            return None, {}
        return response.status_code, response.json()["checks"]

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_for(lambda: self.healthz()[0] == 200, timeout=timeout, what="/healthz to answer ok")

    def listed(self, ip: str) -> bool:
        response = requests.get(f"{self.base_url}/api/v1/ip/{ip}", timeout=ANSWER_WITHIN)
        assert response.status_code == 200, response.text[:500]
        return response.json()["listed"]


@pytest.fixture
def portals(tmp_path, request):
    """Makes migrated, not yet started portals; stops every process they started afterwards,
    printing the logs when the test failed. Ask for it after the services it points at,
    so it is torn down before them."""
    made: list[FaultPortal] = []

    def make(*, database_url: str, redis_url: str, smtp: SmtpServer, **settings: str) -> FaultPortal:
        workdir = tmp_path / f"portal{len(made)}"
        workdir.mkdir()
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_"))},
            "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
            "DEBUG": "false",
            "HTTPS": "false",
            "SECRET_KEY": "fault-tests-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "VAR_DIR": str(workdir / "var"),
            # Seconds, so a test sees the whole delay pass.
            "DELIST_PROPAGATION_DELAY": "2",
            "DELIST_SWEEP_INTERVAL": "1",
            **settings,
        }
        portal = FaultPortal(env, workdir)
        made.append(portal)
        portal.manage("migrate", "--no-input")
        return portal

    try:
        yield make
    finally:
        for portal in made:
            portal.stop()
        if _failed(request):
            for portal in made:
                print(portal.logs())


# --- senders and their mail ------------------------------------------------------------

LINK_RE = re.compile(r"^(http://\S+/confirm/[A-Za-z0-9_.-]+)\s*$", re.MULTILINE)


def mail_kind(message) -> str:
    subject = message["Subject"]
    if subject.startswith("Confirm the delisting"):
        return "confirmation"
    if "has been removed" in subject:
        return "completed"
    return subject


def received(smtp: SmtpServer) -> list[tuple[str, str]]:
    """(recipient, kind) of every mail the SMTP server accepted, doubles included."""
    return [(message["To"], mail_kind(message)) for message in list(smtp.messages)]


def links_to(smtp: SmtpServer, email: str) -> list[str]:
    return [
        LINK_RE.search(text_part(m)).group(1)
        for m in list(smtp.messages)
        if m["To"] == email and mail_kind(m) == "confirmation"
    ]


class Sender:
    """One sender's browser: submits over HTTP, follows the mailed link, presses Delist IP."""

    def __init__(self, portal: FaultPortal, email: str, ip: str):
        self.portal, self.email, self.ip = portal, email, ip
        self.session = requests.Session()
        self.status_url = ""

    def get(self, url: str) -> requests.Response:
        response = self.session.get(url, timeout=ANSWER_WITHIN)
        assert response.status_code < 500, f"{response.status_code} for {url}:\n{response.text[:500]}"
        return response

    def submit(self) -> None:
        start = self.get(f"{self.portal.base_url}/?ip={self.ip}")
        response = self.session.post(
            f"{self.portal.base_url}/request",
            data={"email": self.email, "ip": self.ip, "csrfmiddlewaretoken": csrf_token(start.text)},
            allow_redirects=False,
            timeout=ANSWER_WITHIN,
        )
        assert response.status_code == 302, f"{response.status_code}:\n{response.text[:500]}"
        self.status_url = self.portal.base_url + response.headers["Location"]

    def link(self, smtp: SmtpServer, timeout: float = 30) -> str:
        return wait_for(
            lambda: links_to(smtp, self.email)[:1], timeout=timeout, what=f"mail to {self.email}"
        )[0]

    def confirm(self, link: str) -> None:
        page = self.get(link)
        assert "Delist IP" in page.text, page.text[:500]
        request_id = re.search(r'name="request" value="(\d+)"', page.text).group(1)
        response = self.session.post(
            f"{self.portal.base_url}/confirm/",
            data={"csrfmiddlewaretoken": csrf_token(page.text), "request": request_id},
            allow_redirects=False,
            timeout=ANSWER_WITHIN,
        )
        assert response.status_code == 302, f"{response.status_code}:\n{response.text[:500]}"
        assert self.portal.base_url + response.headers["Location"] == self.status_url

    def delist(self, smtp: SmtpServer) -> None:
        """The whole flow: submit, the mailed link, the button, and the IP off the list."""
        self.submit()
        self.confirm(self.link(smtp))
        wait_for(lambda: not self.portal.listed(self.ip), timeout=30, what=f"{self.ip} to be delisted")


# --- counting ------------------------------------------------------------------------


@dataclass
class Tally:
    """What was owed against what arrived: lost, doubled, or never owed at all."""

    what: str
    owed: list
    got: list

    @property
    def lost(self) -> list:
        counts = Counter(self.got)
        return sorted({key for key in self.owed if not counts[key]})

    @property
    def doubled(self) -> dict:
        return {key: n for key, n in Counter(self.got).items() if n > 1}

    @property
    def unexpected(self) -> list:
        return sorted(set(self.got) - set(self.owed))

    def __str__(self) -> str:
        return (
            f"{self.what}: owed {len(self.owed)}, received {len(self.got)}, lost {len(self.lost)} "
            f"{self.lost[:5]}, doubled {len(self.doubled)} {dict(list(self.doubled.items())[:5])}, "
            f"unexpected {len(self.unexpected)} {self.unexpected[:5]}"
        )


def assert_exactly_once(what: str, owed: list, got: list) -> Tally:
    tally = Tally(what, owed, got)
    print(tally)
    assert not (tally.lost or tally.doubled or tally.unexpected), str(tally)
    return tally


def settle(seconds: float = 3) -> None:
    """A few sweeps' time, so a double that is coming has come before we count."""
    time.sleep(seconds)
