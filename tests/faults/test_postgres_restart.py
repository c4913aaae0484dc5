"""PostgreSQL restarted under running web and worker processes: neither needs a restart of its
own (persistent connections are health-checked before use, CONN_HEALTH_CHECKS)."""

import time

import pytest

from delist_portal.views import HEALTH_TTL
from tests.faults.conftest import Sender, assert_exactly_once, received, settle, wait_for

pytestmark = pytest.mark.faults

IPS = ["5.61.14.7", "5.61.14.8"]


def test_web_and_worker_carry_on_after_postgresql_restarts(own_postgres, own_redis, smtp_server, portals):
    portal = portals(database_url=own_postgres.url, redis_url=own_redis.url, smtp=smtp_server)
    portal.list_ips(IPS)
    portal.start_all()
    portal.wait_healthy()
    before, after = (
        Sender(portal, f"postmaster@{x}.example.com", ip) for x, ip in zip("ab", IPS, strict=True)
    )
    before.delist(smtp_server)
    pids = {name: process.pid for name, process in portal.processes}

    started = time.monotonic()
    own_postgres.ctl("restart")
    wait_for(own_postgres.accepts_connections, timeout=60, what="PostgreSQL to accept connections again")
    print(f"PostgreSQL back after {time.monotonic() - started:.1f} s")

    back = time.monotonic()
    after.delist(smtp_server)  # every page on the way asserts its answer: no 5xx
    print(f"the next sender's flow took {time.monotonic() - back:.1f} s")
    # A fresh probe, not an answer reused from before the restart.
    time.sleep(max(0.0, HEALTH_TTL + 0.5 - (time.monotonic() - back)))
    status, checks = portal.healthz()
    assert status == 200, checks
    assert portal.running() == dict.fromkeys(pids, True)
    assert {name: process.pid for name, process in portal.processes} == pids
    wait_for(lambda: len(smtp_server.messages) >= 4, timeout=30, what="the second completion mail")
    settle()
    owed = [(s.email, kind) for s in (before, after) for kind in ("confirmation", "completed")]
    assert_exactly_once("mail", owed, received(smtp_server))
