"""`./dev run` as a person runs it: the README's walk-through on the embedded default, Ctrl-C, a
restart, and a port taken away while it starts. Each run has a VAR_DIR and a port of its own,
and whatever it leaves behind fails the test (and is stopped)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from tests.conftest import free_port
from tests.dev_script import DEV, ROOT, dev_env, leftovers, processes_mentioning

pytestmark = pytest.mark.e2e

MAIL_START = "=" * 72 + "\nMAIL\n"
MAIL_END = "=" * 72 + "\nEND OF MAIL"


class DevRun:
    """One `./dev run`, its output collected as it comes."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = int(env["PORT"])
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(DEV), "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal of its own: Ctrl-C reaches its group only
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, *, timeout: float = 90, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the output of ./dev run:\n{self.output[-6000:]}")
            time.sleep(0.1)

    def wait_until_ready(self) -> None:
        self.wait_for("celery@")
        self.wait_for(" ready.")
        self.wait_for("Quit the server with CONTROL-C.")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it to the foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.exit_status()

    def exit_status(self, timeout: float = 60) -> int:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return status

    def stop_everything(self) -> None:
        """After the test, whatever happened: nothing of this run keeps running."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid, _cmd in processes_mentioning(self.env["VAR_DIR"]) + processes_mentioning(
            f"127.0.0.1:{self.port}"
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dev_run(tmp_path):
    """Starts `./dev run` on a fresh VAR_DIR and port; every run is stopped after the test."""
    runs: list[DevRun] = []
    env = dev_env(
        tmp_path / "var",
        PORT=str(free_port()),
        DELIST_PROPAGATION_DELAY="0",
        DELIST_SWEEP_INTERVAL="1",
        # Lines as a terminal shows them, not held in a pipe's buffer.
        PYTHONUNBUFFERED="1",
    )

    def start() -> DevRun:
        run = DevRun(env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop_everything()


def assert_stopped_cleanly(run: DevRun, status: int, expected: int) -> None:
    assert status == expected, run.output[-6000:]
    assert "unbound variable" not in run.output
    assert "==> stopping the Celery worker and beat" in run.output
    assert leftovers(run.env["VAR_DIR"]) == []
    assert leftovers(f"127.0.0.1:{run.port}") == []


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def printed_mails(output: str) -> list[str]:
    return [part.split(MAIL_END, 1)[0] for part in output.split(MAIL_START)[1:]]


def test_the_readme_walk_through_prints_each_mail_once_and_a_restart_keeps_the_delisting(dev_run):
    run = dev_run()
    run.wait_until_ready()
    base = f"http://127.0.0.1:{run.port}"
    browser = requests.Session()

    # 1. The start page, one email address, Send confirmation link.
    page = browser.get(f"{base}/?ip=5.61.14.7", timeout=30)
    sent = browser.post(
        f"{base}/request",
        data={
            "csrfmiddlewaretoken": csrf_token(page.text),
            "email": "postmaster@example.com",
            "ip": "5.61.14.7",
        },
        timeout=30,
    )
    assert sent.status_code == 200 and "/status/" in sent.url, sent.text[:2000]

    # 2. The mail in the terminal, framed, the link on a line of its own; open it, press Delist IP.
    run.wait_for(MAIL_END)
    [confirmation] = printed_mails(run.output)
    link = re.search(rf"^({re.escape(base)}/confirm/\S+)$", confirmation, re.MULTILINE).group(1)
    confirm_page = browser.get(link, timeout=30)
    request_id = re.search(r'name="request" value="([^"]+)"', confirm_page.text).group(1)
    pressed = browser.post(
        f"{base}/confirm/",
        data={"csrfmiddlewaretoken": csrf_token(confirm_page.text), "request": request_id},
        timeout=30,
    )
    assert pressed.status_code == 200 and "/status/" in pressed.url

    # 3. The worker delists the IP and prints the "removed" mail.
    run.wait_for(MAIL_END, count=2)
    time.sleep(3)  # a few more sweeps, which did nothing
    mails = printed_mails(run.output)
    subjects = [re.search(r"^Subject: (.*)$", m, re.MULTILINE).group(1) for m in mails]
    assert subjects == [
        "Confirm the delisting of 5.61.14.7",
        "5.61.14.7 has been removed from our blocklist",
    ]
    # Printed, not logged; and the sweep speaks only when it did something.
    assert not [
        line for line in run.lines if "WARNING/" in line and ("Subject" in line or "/confirm/" in line)
    ]
    assert "Sending due task" not in run.output
    assert "requests_app.sweep[" not in run.output and "requests_app.mails_send_due[" not in run.output
    assert run.output.count("sweep: 1 delisting(s) applied") == 1
    assert run.output.count("added 4, unchanged 0") == 1
    assert_stopped_cleanly(run, run.interrupt(), 130)

    # Started again: the demo list is not imported over what the user delisted.
    again = dev_run()
    again.wait_until_ready()
    assert "added " not in again.output and "unchanged" not in again.output
    assert requests.get(f"{base}/api/v1/ip/5.61.14.7", timeout=30).json()["listed"] is False
    assert requests.get(f"{base}/api/v1/ip/45.134.26.10", timeout=30).json()["listed"] is True
    assert_stopped_cleanly(again, again.interrupt(), 130)


def test_a_port_taken_while_it_starts_stops_the_worker_and_says_why(dev_run):
    run = dev_run()
    # The port is free when ./dev run checks it; something takes it before the web server binds.
    run.wait_for("==> starting the Celery worker with beat")
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", run.port))
        taker.listen()
        status = run.exit_status(timeout=90)
    assert status != 0
    assert "That port is already in use" in run.output
    assert f"Port {run.port} on 127.0.0.1 is in use: choose another with PORT={run.port + 1} ./dev run" in (
        run.output
    )
    assert_stopped_cleanly(run, status, status)
