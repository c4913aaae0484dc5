"""Machines as users, end to end: keys made with manage.py, a live gunicorn, a real worker
rewriting the exports, rbldnsd answering dig, and a consumer following the change stream."""

from __future__ import annotations

import pytest
import requests

from tests.e2e import test_mail_server_tools as mail_tools
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

# The mail-server tools' fixtures: rbldnsd serving the folder the worker writes.
tools = mail_tools.tools
export_dir = mail_tools.export_dir
rbldnsd = mail_tools.rbldnsd

LISTED = "81.2.69.160"


@pytest.fixture
def portal_env(portal_env, export_dir):
    return {**portal_env, "EXPORT_DIR": str(export_dir)}


def new_key(portal, name: str, scope: str) -> str:
    return portal.manage("api_key", "create", name, "--scope", scope).strip()


class Consumer:
    def __init__(self, base_url: str, key: str):
        self.url = f"{base_url}/api/v1/changes"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.active: dict[int, str] = {}
        self.cursor = None

    def start(self) -> None:
        body = requests.get(self.url, headers=self.headers, timeout=10).json()
        self.active = {item["id"]: item["network"] for item in body["listed"]}
        self.cursor = body["cursor"]

    def poll(self) -> requests.Response:
        response = requests.get(self.url, params={"cursor": self.cursor}, headers=self.headers, timeout=10)
        if response.status_code == 200:
            body = response.json()
            self.active.update({item["id"]: item["network"] for item in body["listed"]})
            for item in body["delisted"]:
                self.active.pop(item["id"], None)
            self.cursor = body["cursor"]
        return response

    def sees(self, network: str) -> bool:
        assert self.poll().status_code == 200
        return network in self.active.values()


def test_a_write_key_lists_and_delists_and_rbldnsd_and_a_stream_consumer_follow(
    portal, tools, rbldnsd, export_dir
):
    writer = {"Authorization": f"Bearer {new_key(portal, 'e2e-writer', 'write')}"}
    reader_key = new_key(portal, "e2e-reader", "read")
    consumer = Consumer(portal.base_url, reader_key)
    consumer.start()
    assert consumer.active == {}

    listed = requests.post(
        f"{portal.base_url}/api/v1/entries",
        json={"network": LISTED, "reason": "trap hits", "source": "e2e"},
        headers=writer,
        timeout=10,
    )
    assert listed.status_code == 201, listed.text
    entry = listed.json()
    assert entry["network"] == f"{LISTED}/32"

    # The worker rewrites EXPORT_DIR by itself; rbldnsd serves what it wrote.
    zone = export_dir / "blocklist.rbldnsd"
    wait_for(
        lambda: zone.exists() and f"{LISTED}/32" in zone.read_text(), timeout=60, what="the worker's export"
    )
    port = rbldnsd()
    wait_for(
        lambda: mail_tools.dig(tools, port, LISTED, "A") == ["127.0.0.2"],
        timeout=15,
        what="rbldnsd to list it",
    )
    wait_for(lambda: consumer.sees(f"{LISTED}/32"), timeout=15, what="the stream to show the listing")

    # A read key cannot write.
    read_write = requests.post(
        f"{portal.base_url}/api/v1/entries/{entry['id']}/delist",
        json={"reason": "not yours"},
        headers={"Authorization": f"Bearer {reader_key}"},
        timeout=10,
    )
    assert read_write.status_code == 403

    delisted = requests.post(
        f"{portal.base_url}/api/v1/entries/{entry['id']}/delist",
        json={"reason": "owner closed the relay"},
        headers=writer,
        timeout=10,
    )
    assert delisted.status_code == 200 and delisted.json()["delisted_at"]
    wait_for(lambda: not consumer.sees(f"{LISTED}/32"), timeout=15, what="the stream to show the delisting")
    wait_for(lambda: mail_tools.dig(tools, port, LISTED, "A") == [], timeout=60, what="rbldnsd to drop it")

    # Revoked: the next call is refused.
    portal.manage("api_key", "revoke", "e2e-reader")
    assert consumer.poll().status_code == 401
