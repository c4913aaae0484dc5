"""The exports as the real mail-server tools read them: rbldnsd answering dig, and postmap.

Needs rbldnsd, dig and postmap on PATH (.ci/mail-server-tools.sh installs them); skipped
otherwise. Everything runs on 127.0.0.1: addresses below only appear in DNS query names.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse

from blocklist.exports import exports_refresh
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.conftest import confirmation_link, link_path, press_delist_button
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

TOOLS = ("rbldnsd", "dig", "postmap")
ZONE = "bl.example.org"
PORTAL = "https://delist.example.org"  # tests/settings.py
UNLISTED = "81.2.69.160"
# query address -> the entry that covers it
QUERIES = {
    "5.61.14.7": "5.61.14.7",
    "37.120.8.9": "37.120.8.0/24",
    "2a05:d018:1:5::1": "2a05:d018:1::/48",
}


def _tool(name: str) -> str:
    # The Debian packages put rbldnsd and postmap in sbin, which a user's PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or ""


@pytest.fixture
def tools() -> dict[str, str]:
    found = {name: _tool(name) for name in TOOLS}
    missing = [name for name, path in found.items() if not path]
    if missing:
        pytest.skip(f"mail-server tools not installed: {', '.join(missing)} (run .ci/mail-server-tools.sh)")
    return found


@pytest.fixture
def export_dir(settings):
    # rbldnsd drops to user rbldns: the folder must be traversable by everyone (pytest's
    # tmp_path is 0700) and the files world-readable, which write_export sees to.
    folder = Path(tempfile.mkdtemp(prefix="delist-e2e-"))
    folder.chmod(0o755)
    settings.EXPORT_DIR = str(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postfix_config(tmp_path) -> Path:
    # With "No configuration" there is no main.cf and postmap -q dies; an empty one will do.
    (tmp_path / "main.cf").write_text("")
    return tmp_path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rbldnsd(tools, export_dir):
    """start() runs rbldnsd on the combined export and returns its port; teardown stops it."""
    running: list[tuple[subprocess.Popen, object]] = []

    def start() -> int:
        port = _free_udp_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in teardown, after printing it)
        command = [
            tools["rbldnsd"],
            "-n",  # stay in the foreground, so the test owns the process
            "-b",
            f"127.0.0.1/{port}",
            "-c",
            "1",  # recheck the file every second
            f"{ZONE}:combined:{export_dir / 'blocklist.rbldnsd'}",
        ]
        try:
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
        except BaseException:
            log.close()
            raise
        return port

    yield start
    for process, log in running:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.seek(0)
        print(log.read().decode(errors="replace"))  # captured: pytest shows it on failure
        log.close()


def query_name(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return ".".join(reversed(ip.split("."))) + f".{ZONE}"
    return address.reverse_pointer.removesuffix(".ip6.arpa") + f".{ZONE}"


def dig(tools, port: int, ip: str, rtype: str) -> list[str]:
    result = subprocess.run(
        [tools["dig"], "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1", query_name(ip), rtype],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert "connection timed out" not in result.stdout, result.stdout
    return result.stdout.splitlines()


def postmap(tools, config: Path, ip: str, table: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tools["postmap"], "-c", str(config), "-q", ip, f"cidr:{table}"],
        capture_output=True,
        text=True,
        timeout=10,
    )


def message(ip: str) -> str:
    return (
        f"Access denied, banned sending IP [{ip}]; To request removal from this list please "
        f"visit {PORTAL}/?ip={ip} and follow the directions."
    )


def test_rbldnsd_and_postfix_block_what_is_listed_until_it_is_delisted(
    tools,
    listing,
    export_dir,
    rbldnsd,
    postfix_config,
    client,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    for network in QUERIES.values():
        listing(network, reason="e2e")
    exports_refresh()
    assert os.stat(export_dir / "blocklist.rbldnsd").st_mode & 0o777 == 0o644
    table = export_dir / "blocklist.postfix.cidr"

    port = rbldnsd()
    wait_for(lambda: _answers(tools, port), timeout=10, what="rbldnsd to answer")

    for ip, network in QUERIES.items():
        assert dig(tools, port, ip, "A") == ["127.0.0.2"], ip
        assert dig(tools, port, ip, "TXT") == [f'"{message(ip)}"'], ip
        result = postmap(tools, postfix_config, ip, table)
        address = network.split("/")[0]
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"550 5.7.606 {message(address)}\n"
    assert dig(tools, port, UNLISTED, "A") == []
    assert dig(tools, port, UNLISTED, "TXT") == []
    unlisted = postmap(tools, postfix_config, UNLISTED, table)
    assert (unlisted.returncode, unlisted.stdout) == (1, "")

    # The sender's flow delists the single address; the sweep (the worker's code) rewrites
    # EXPORT_DIR by itself, and both tools let the IP through after their reload.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": "postmaster@mail.example.com", "ip": "5.61.14.7"})
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
    request = DelistRequest.objects.get()
    assert request.state == State.APPROVED
    before = table.stat().st_mtime_ns
    assert services.sweep(now=request.effective_at).delistings_applied == 1
    assert table.stat().st_mtime_ns != before
    wait_for(
        lambda: dig(tools, port, "5.61.14.7", "A") == [],
        timeout=10,
        what="rbldnsd to reload without 5.61.14.7",
    )
    assert dig(tools, port, "5.61.14.7", "TXT") == []
    gone = postmap(tools, postfix_config, "5.61.14.7", table)
    assert (gone.returncode, gone.stdout) == (1, "")
    # The others stay listed.
    assert dig(tools, port, "37.120.8.9", "A") == ["127.0.0.2"]
    assert dig(tools, port, "2a05:d018:1:5::1", "A") == ["127.0.0.2"]
    assert postmap(tools, postfix_config, "37.120.8.9", table).returncode == 0

    # A sweep with nothing to do leaves the files alone.
    unchanged = table.stat().st_mtime_ns
    services.sweep()
    assert table.stat().st_mtime_ns == unchanged


def _answers(tools, port: int) -> bool:
    # Before rbldnsd listens, dig times out; once it does, it answers something.
    result = subprocess.run(
        [tools["dig"], "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1", f"x.{ZONE}", "A"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return "timed out" not in result.stdout and result.returncode == 0
