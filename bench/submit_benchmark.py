#!/usr/bin/env python
"""Submissions under gunicorn at 32 concurrent clients, beside a bare POST view.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/submit_benchmark.py

Loads the lookup benchmark's 1,000,000 active entries (plus 100,000 inactive) into a scratch
database (delist_bench_submit, dropped at the end unless --keep), starts gunicorn as docker compose
does (gunicorn.conf.py, production settings, Redis db 12 as cache and broker, no worker: each
submission still queues its confirmation mail), and drives, in interleaved phases:

- the baseline: POST /healthz with the CSRF cookie and token, so the CSRF check and every other
  middleware run, and the view answers from its 5-second cache (a bare POST view, with no URL
  of its own in the portal);
- submissions: POST /request with a new mailbox each time (over 100,000 domains) and a listed IP,
  as the start page's form sends them (the per-client limit and the portal's ceiling are raised
  through their variables for the run; the mailbox and domain limits stay as shipped).

It prints throughput and p50/p99 latency beside the baseline's, the CPU each request cost by
process, and checks that every 302 made exactly one request and one owed confirmation mail.
Goal: at least 40% of the baseline's throughput, p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared loader)
import lookup_benchmark as lookup  # noqa: E402  (gunicorn, the HTTP clients, the CPU meter)

ROOT = data.ROOT
HOST = lookup.HOST
# Every client submits from 127.0.0.1, and the whole run is far over the portal's ceiling:
# those two are raised, so that the run measures the portal, not its 429 page. The mailbox and
# domain limits stay as shipped: each submission has a new mailbox, over DOMAINS domains, so
# none of them comes near its limit, and counting one walks the few mails it has.
RATES = {"DELIST_SUBMIT_RATE": "9999999/h", "DELIST_MAIL_RATE": "9999999/h"}
DOMAINS = 100_000
CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Sender:
    """One client's CSRF cookie and form token, from one visit of the start page."""

    cookie: str
    token: str


def visit_start_page(port: int) -> Sender:
    status, headers, body = asyncio.run(lookup.http(port, lookup.request_bytes("GET", "/", port)))
    cookie = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", ""))
    token = CSRF_INPUT.search(body)
    if status != 200 or not cookie or not token:
        sys.exit(f"the start page gave no CSRF cookie and token (HTTP {status})")
    return Sender(cookie[1], token[1].decode())


def listed_ips(rows: int, count: int, rng: random.Random) -> list[str]:
    """Single listed IPv4 addresses (most of a real list), IPv6 and range members among them."""
    samples = lookup.sample_ips(rows, count, rng)
    return (
        samples["v4 /32"]
        + samples["v4 in /24 or /16"][: count // 4]
        + samples["v6 in /48 or /64"][: count // 4]
    )


def outbox(url: str) -> tuple[int, int]:
    """(requests, owed confirmation mails) in the database."""
    import psycopg2

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM requests_app_delistrequest), "
            "(SELECT count(*) FROM requests_app_mail WHERE kind = 'confirmation')"
        )
        counts = cursor.fetchone()
    connection.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=8, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both phases")
    parser.add_argument("--redis", default=f"redis://{HOST}:6379/12", help="a Redis database of its own")
    parser.add_argument("--database", default="delist_bench_submit")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 500 or not 0 < args.seconds <= 120 or not 1 <= args.rounds <= 20:
        parser.error("--clients must be 1 to 500, --seconds 0 to 120, --rounds 1 to 20")
    if not args.redis.startswith(f"redis://{HOST}:"):
        parser.error(f"--redis must be on {HOST}: this benchmark sends nothing off the machine")

    import redis

    url, admin, kept = data.scratch_database(args.database, keep=args.keep)
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-"))
    env = lookup.scratch_env(url, folder, REDIS_URL=args.redis, **RATES)
    redis.Redis.from_url(args.redis).flushdb()
    server = None
    failures = 0
    try:
        migrate = [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True)
        if not kept or not lookup.has_entries(url):
            data.load(url, args.rows, folder, layout=data.network_of_large)
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
            f"{args.rows:,} active entries; gunicorn {lookup.gunicorn_sizing(env)}"
        )
        server = lookup.Gunicorn(env, folder)
        server.wait_healthy()
        port = server.port
        meter = lookup.CpuMeter(server.process.pid, admin, args.database)
        senders = [visit_start_page(port) for _ in range(args.clients)]
        ips = listed_ips(args.rows, 2000, random.Random(3))
        before = outbox(url)
        submitted = iter(range(10**12))
        run = f"bench{random.randrange(16**6):06x}"  # no mailbox of an earlier (kept) run again

        def bare(n: int) -> bytes:
            sender = senders[n]
            body = urlencode({"csrfmiddlewaretoken": sender.token}).encode()
            return post("/healthz", body, sender)

        def submission(n: int) -> bytes:
            sender, k = senders[n], next(submitted)
            form = {"csrfmiddlewaretoken": sender.token, "email": f"{run}-{k}@d{k % DOMAINS}.example.net"}
            return post("/request", urlencode({**form, "ip": ips[k % len(ips)]}).encode(), sender)

        def post(path: str, body: bytes, sender: Sender) -> bytes:
            headers = (
                f"Cookie: csrftoken={sender.cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            )
            return lookup.request_bytes("POST", path, port, body=body, headers=headers)

        phases = {"bare POST (/healthz)": (bare, {200}), "submission": (submission, {302})}
        print(
            f"\nPOST under gunicorn, {args.clients} closed-loop clients, {args.rounds} rounds of "
            f"{args.seconds:.0f} s per phase, interleaved:"
        )
        totals = lookup.run_phases(
            port, phases, clients=args.clients, seconds=args.seconds, rounds=args.rounds, meter=meter
        )
        lookup.print_phases(totals, ["bare POST (/healthz)"])
        base, submits = totals["bare POST (/healthz)"], totals["submission"]
        p99 = lookup.percentile(submits.latencies, 0.99)
        print(
            f"\nsubmissions: {submits.rate / base.rate:.0%} of the bare POST's throughput (goal: at least "
            f"40%), p99 {p99:.0f} ms (goal: under 100 ms)"
        )
        after = outbox(url)
        made = submits.statuses[302]
        if (after[0] - before[0], after[1] - before[1]) != (made, made):
            sys.exit(
                f"{made} submissions answered 302, but {after[0] - before[0]} requests and "
                f"{after[1] - before[1]} confirmation mails were made"
            )
        failures = sum(sum(phase.failures.values()) for phase in totals.values())
    finally:
        if server is not None:
            server.stop()
        redis.Redis.from_url(args.redis).flushdb()
        data.clean_up(folder, admin, args.database, keep=args.keep)
    if failures:
        sys.exit(f"{failures} requests failed or got an unexpected status")


if __name__ == "__main__":
    main()
