#!/usr/bin/env python
"""How fast the sweep applies a burst of due delistings and sends their mail, and how soon after
`effective_at` a delisting is applied by a real worker.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/sweep_benchmark.py

Three parts (--parts, all by default), each printing its figures beside a baseline from the same run:

burst    A scratch database (delist_bench_sweep beside DATABASE_URL's) holds a history of --requests
         completed requests with their delisted entries, events and sent mails, analyzed; then a
         burst of --requests approved requests, all due, not analyzed (the planner's statistics are
         stale, as after a real burst; autovacuum is off on the scratch tables so they stay so).
         Each run gets a fresh copy (CREATE DATABASE ... TEMPLATE) and either the sweep
         (`delistings_apply_due()` in a worker process of its own) or the baseline: one SQL
         statement doing the same writes set-based (requests completed, entries delisted, an event
         per entry and per request, a mail per request). The two alternate, --repeat times each,
         and every run is checked: each request applied once, each entry delisted once by the
         first request covering it, entries already delisted left alone. Then once with two
         sweeping workers at once.
mail     On the copy the last sweep left (--requests owed completion mails): the plans of the mail
         claims (EXPLAIN ANALYZE, rolled back; the one mail_send ran before issue 10 too), then
         `mails_send_due()` for --mail-budget seconds to an SMTP sink, as the outbox is now and as
         it was (BEFORE, read from git), against smtplib sending the same message as often over
         one connection; twice, interleaved.
latency  A real Celery worker and beat (DELIST_PROPAGATION_DELAY=0, DELIST_SWEEP_INTERVAL the
         default 30 s unless --interval), --latency-requests approvals spread over --spread seconds:
         time from effective_at until the entry is seen delisted, against the wait for the next
         beat tick (what a periodic sweep cannot beat) and the goal, the interval plus 5 s.

Redis: the latency part uses REDIS_URL's server with database --redis-db (flushed before and after).
The scratch databases are dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared scratch-database helpers)

ROOT = data.ROOT
BIN = Path(sys.executable).parent
# The outbox as it was before issue 10 (a claim and a connection per mail), read from git.
BEFORE = "e94aa30"

# --- the data -----------------------------------------------------------------------

TABLES = [
    "blocklist_entry",
    "blocklist_event",
    "blocklist_listversion",
    "requests_app_delistrequest",
    "requests_app_delistrequest_entries",
    "requests_app_mail",
]
REQUEST_COLUMNS = (
    "email, mailbox, email_domain, ip, state, status_key, language, expiry_reason, created_at, "
    "confirmed_at, decided_at, decided_by, effective_at, completed_at, decision_reason"
)
ENTRY_COLUMNS = (
    "network, version, network_start, prefix_len, reason, code, source, listed_at, self_service, "
    "delisted_at, delisted_by"
)
# History: requests completed a month ago, their entries, events and sent mails.
HISTORY_SQL = f"""
INSERT INTO blocklist_entry ({ENTRY_COLUMNS})
SELECT host('6.0.0.0'::inet + n) || '/32', 4, lpad(to_hex(('6.0.0.0'::inet + n) - '0.0.0.0'::inet), 8, '0'),
       32, 'history', '5.7.606', 'bench', now() - interval '31 days', true, now() - interval '30 days', ''
FROM generate_series(1, %(n)s) n;
INSERT INTO requests_app_delistrequest ({REQUEST_COLUMNS})
SELECT 'h' || n || '@mail.example.com', 'h' || n || '@mail.example.com', 'mail.example.com',
       '6.0.0.0'::inet + n, 'completed', md5('h' || n), 'en', '', now() - interval '31 days',
       now() - interval '31 days', now() - interval '31 days', 'self-service', now() - interval '30 days',
       now() - interval '30 days', ''
FROM generate_series(1, %(n)s) n;
INSERT INTO requests_app_delistrequest_entries (delistrequest_id, entry_id)
SELECT r.id, e.id FROM requests_app_delistrequest r JOIN blocklist_entry e ON e.network = host(r.ip) || '/32';
UPDATE blocklist_entry e SET delisted_by = 'delist request #' || m.delistrequest_id
FROM requests_app_delistrequest_entries m WHERE m.entry_id = e.id;
INSERT INTO blocklist_event (at, action, actor, reason, entry_id, request_id)
SELECT now() - interval '30 days', 'delisted', 'worker', '', entry_id, delistrequest_id
FROM requests_app_delistrequest_entries;
INSERT INTO blocklist_event (at, action, actor, reason, request_id)
SELECT now() - interval '30 days', 'completed', 'worker', '', id FROM requests_app_delistrequest;
INSERT INTO requests_app_mail
       (request_id, kind, created_at, due_at, sent_at, token_nonce, attempts, last_error)
SELECT id, 'completed', completed_at, completed_at, completed_at, '', 1, '' FROM requests_app_delistrequest;
INSERT INTO blocklist_listversion (id, version) VALUES (1, 1);
"""
# The burst: request n covers entry n, but every 100th covers the entry of the one before (two
# senders, one entry: delisted once, by the first), and the entries numbered 51 in each hundred
# were delisted by an admin meanwhile (left alone). Due over the last hour, in id order.
BURST_SQL = f"""
INSERT INTO blocklist_entry ({ENTRY_COLUMNS})
SELECT host('5.0.0.0'::inet + n) || '/32', 4, lpad(to_hex(('5.0.0.0'::inet + n) - '0.0.0.0'::inet), 8, '0'),
       32, 'burst', '5.7.606', 'bench', now() - interval '2 days', true,
       CASE WHEN n %% 100 = 51 THEN now() - interval '2 hours' END,
       CASE WHEN n %% 100 = 51 THEN 'admin' ELSE '' END
FROM generate_series(1, %(n)s) n;
INSERT INTO requests_app_delistrequest ({REQUEST_COLUMNS})
SELECT 's' || n || '@mail.example.com', 's' || n || '@mail.example.com', 'mail.example.com',
       '5.0.0.0'::inet + n, 'approved', md5('s' || n), 'en', '', now() - interval '1 day',
       now() - interval '1 day', now() - interval '1 hour', 'self-service',
       now() - interval '1 hour' + n * (interval '3 seconds' / %(n)s), NULL, ''
FROM generate_series(1, %(n)s) n;
INSERT INTO requests_app_delistrequest_entries (delistrequest_id, entry_id)
SELECT r.id, e.id FROM requests_app_delistrequest r
JOIN blocklist_entry e
  ON e.network = host(r.ip - CASE WHEN (r.ip - '5.0.0.0'::inet) %% 100 = 0 THEN 1 ELSE 0 END) || '/32'
WHERE r.state = 'approved';
"""
# The baseline: the sweep's writes as one statement (first request = lowest id, as the sweep's).
BASELINE_SQL = """
WITH due AS (
  UPDATE requests_app_delistrequest SET state = 'completed', completed_at = now()
  WHERE state = 'approved' AND effective_at <= now() RETURNING id
), covered AS (
  SELECT m.entry_id, min(m.delistrequest_id) AS request_id
  FROM requests_app_delistrequest_entries m JOIN due ON due.id = m.delistrequest_id GROUP BY m.entry_id
), delisted AS (
  UPDATE blocklist_entry e SET delisted_at = now(), delisted_by = 'delist request #' || c.request_id
  FROM covered c WHERE e.id = c.entry_id AND e.delisted_at IS NULL RETURNING e.id, c.request_id
), entry_events AS (
  INSERT INTO blocklist_event (at, action, actor, reason, entry_id, request_id)
  SELECT now(), 'delisted', 'worker', '', id, request_id FROM delisted
), request_events AS (
  INSERT INTO blocklist_event (at, action, actor, reason, request_id)
  SELECT now(), 'completed', 'worker', '', id FROM due
), mails AS (
  INSERT INTO requests_app_mail (request_id, kind, created_at, due_at, token_nonce, attempts, last_error)
  SELECT id, 'completed', now(), now(), '', 0, '' FROM due
)
UPDATE blocklist_listversion SET version = version + 1 WHERE id = 1
"""
CHECKS = {
    "requests still approved": "SELECT count(*) FROM requests_app_delistrequest WHERE state = 'approved'",
    "burst requests completed": (
        "SELECT count(*) FROM requests_app_delistrequest WHERE email LIKE 's%%' AND state = 'completed'"
    ),
    "completed events": (
        "SELECT count(*) FROM blocklist_event WHERE action = 'completed' AND at > now() - interval '1 day'"
    ),
    "requests with a completed event": (
        "SELECT count(DISTINCT request_id) FROM blocklist_event WHERE action = 'completed' "
        "AND at > now() - interval '1 day'"
    ),
    "delisted events": (
        "SELECT count(*) FROM blocklist_event WHERE action = 'delisted' AND at > now() - interval '1 day'"
    ),
    "entries with a delisted event": (
        "SELECT count(DISTINCT entry_id) FROM blocklist_event WHERE action = 'delisted' "
        "AND at > now() - interval '1 day'"
    ),
    "delisted_by not the event's request": (
        "SELECT count(*) FROM blocklist_entry e JOIN blocklist_event v ON v.entry_id = e.id "
        "AND v.action = 'delisted' AND v.at > now() - interval '1 day' "
        "WHERE e.delisted_by <> 'delist request #' || v.request_id"
    ),
    "delisted by a later request than the first": (
        "SELECT count(*) FROM blocklist_entry e JOIN (SELECT entry_id, min(delistrequest_id) AS first "
        "FROM requests_app_delistrequest_entries GROUP BY entry_id) m ON m.entry_id = e.id "
        "WHERE e.reason = 'burst' AND e.delisted_by LIKE 'delist request #%%' "
        "AND e.delisted_by <> 'delist request #' || m.first"
    ),
    "completion mails owed": "SELECT count(*) FROM requests_app_mail WHERE sent_at IS NULL",
    "requests with a mail owed": (
        "SELECT count(DISTINCT request_id) FROM requests_app_mail WHERE sent_at IS NULL"
    ),
    "burst entries still listed": (
        "SELECT count(*) FROM blocklist_entry WHERE reason = 'burst' AND delisted_at IS NULL"
    ),
    "admin's delistings left alone": (
        "SELECT count(*) FROM blocklist_entry WHERE delisted_by = 'admin' "
        "AND delisted_at < now() - interval '1 hour'"
    ),
}


def expected(n: int) -> dict[str, int]:
    hundreds = n // 100
    return {
        "requests still approved": 0,
        "burst requests completed": n,
        "completed events": n,
        "requests with a completed event": n,
        "delisted events": n - 2 * hundreds,
        "entries with a delisted event": n - 2 * hundreds,
        "delisted_by not the event's request": 0,
        "delisted by a later request than the first": 0,
        "completion mails owed": n,
        "requests with a mail owed": n,
        "burst entries still listed": hundreds,
        "admin's delistings left alone": hundreds,
    }


def load(url: str, n: int) -> None:
    started = time.monotonic()
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        for table in TABLES:
            # Statistics stay as ANALYZE left them before the burst, as they do in the minute
            # after a real one; and the same for the sweep and its baseline.
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        cursor.execute(HISTORY_SQL, {"n": n})
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute(BURST_SQL, {"n": n})
        cursor.execute("VACUUM")  # a clean heap for every copy; no ANALYZE: the burst stays unseen
    connection.close()
    print(f"loaded {n} completed requests and a burst of {n} due ones in {time.monotonic() - started:.1f} s")


def check(url: str, n: int, what: str) -> None:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        found = {}
        for name, sql in CHECKS.items():
            cursor.execute(sql)
            found[name] = cursor.fetchone()[0]
    connection.close()
    wrong = {k: (v, expected(n)[k]) for k, v in found.items() if v != expected(n)[k]}
    if wrong:
        sys.exit(f"{what}: wrong counts (found, expected): {wrong}")


def clone(admin, template: str, name: str) -> str:
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    parts = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parts._replace(path=f"/{name}"))


def drop(admin, name: str) -> None:
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def portal_env(url: str, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_", "REDIS_"))}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DATABASE_URL": url,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "benchmark-" + "x" * 40,
        "PORTAL_BASE_URL": "https://delist.example.org",
        "VAR_DIR": str(folder / "var"),
        **extra,
    }


def child(kind: str, env: dict[str, str], folder: Path, *args: str) -> subprocess.Popen:
    log = open(folder / f"{kind}.log", "ab")  # noqa: SIM115  (the process holds it)
    return subprocess.Popen(
        [sys.executable, __file__, "--child", kind, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
    )


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=3600)
    if process.returncode:
        sys.exit(f"a benchmark process failed (exit {process.returncode}); see its log")
    return json.loads(out.decode().strip().splitlines()[-1])


def sweep_run(url: str, folder: Path, workers: int = 1) -> tuple[float, list[int]]:
    """(wall seconds, requests each applied) of `workers` processes sweeping one database at once."""
    start_at = time.time() + 5  # each process sets Django up first, then they start together
    processes = [
        child("sweep", portal_env(url, folder), folder, "--start-at", str(start_at)) for _ in range(workers)
    ]
    results = [result(p) for p in processes]
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return wall, [r["applied"] for r in results]


def baseline_run(url: str) -> float:
    connection = psycopg2.connect(url)
    with connection.cursor() as cursor:
        # Its best plan: on the burst's stale statistics this statement nests loops and takes
        # many minutes (the sweep's batches are built not to care).
        cursor.execute("ANALYZE")
        connection.commit()
        started = time.perf_counter()
        cursor.execute(BASELINE_SQL)
        connection.commit()
        elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def burst(args, url: str, kept: bool, admin, folder: Path) -> str:
    """Part (4); returns the name of the copy the last sweep left, with its mail owed."""
    template = args.database
    env = portal_env(url, folder)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    if not kept:
        load(url, args.requests)
    n = args.requests
    print(f"\n(4) the sweep applying {n} due requests against one set-based SQL statement\n")
    print(f"{'run':>4} {'sweep s':>9} {'statement s':>12} {'ratio':>6}")
    sweeps, statements = [], []
    mail_db = f"{template}_mail"
    for run in range(args.repeat):
        order = ("sweep", "statement") if run % 2 == 0 else ("statement", "sweep")
        for what in order:
            name = mail_db if what == "sweep" else f"{template}_run"
            copy = clone(admin, template, name)
            if what == "sweep":
                seconds, applied = sweep_run(copy, folder)
                if applied != [n]:
                    sys.exit(f"the sweep applied {applied} requests, not {n}")
                sweeps.append(seconds)
            else:
                statements.append(baseline_run(copy))
            check(copy, n, what)
            if what == "statement":
                drop(admin, name)
        print(
            f"{run + 1:>4} {sweeps[-1]:9.2f} {statements[-1]:12.2f} {sweeps[-1] / statements[-1]:6.2f}",
            flush=True,
        )
    median_sweep, median_statement = statistics.median(sweeps), statistics.median(statements)
    print(
        f"median {median_sweep:7.2f} {median_statement:12.2f} {median_sweep / median_statement:6.2f}"
        f"   (goal: within 5x; every run checked: each request applied once)"
    )
    copy = clone(admin, template, f"{template}_two")
    seconds, applied = sweep_run(copy, folder, workers=2)
    check(copy, n, "two workers")
    drop(admin, f"{template}_two")
    print(
        f"two workers at once: {seconds:.2f} s ({seconds / median_statement:.2f}x the statement), "
        f"applied {' + '.join(map(str, applied))} = {sum(applied)}, each request once (checked)"
    )
    return mail_db


# --- mail ---------------------------------------------------------------------------


class Sink:
    """An SMTP server that counts what it receives, per recipient, and when."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.received: dict[str, int] = {}
        self.first_at: dict[str, float] = {}
        self.sample: bytes | None = None

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        for rcpt in envelope.rcpt_tos:
            self.received[rcpt] = self.received.get(rcpt, 0) + 1
            self.first_at.setdefault(rcpt, now)
        if self.sample is None:
            self.sample = envelope.original_content
        return "250 OK"


def start_sink() -> tuple[Sink, object]:
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    return sink, controller


def mail(args, folder: Path, mail_db: str) -> None:
    """Part (2): the claims' plans with the burst's mail owed, then sending against smtplib."""
    url = urlunparse(urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{mail_db}"))
    sink, controller = start_sink()
    env = portal_env(url, folder, EMAIL_URL=f"smtp://127.0.0.1:{controller.port}")
    try:
        print(f"\n(2) {args.requests} completion mails owed after the burst: the claims' plans\n")
        for name, plan in result(child("explain", env, folder)).items():
            print(f"{name}:\n    " + "\n    ".join(plan))
        print(
            f"\nsending for {args.mail_budget} s (the mail sweep's budget), against smtplib sending as many"
        )
        print("of the same message over one connection to the same SMTP sink (aiosmtpd, its own thread):\n")
        ours, before, theirs, sent_in_all = [], [], [], 0
        for _run in range(2):
            for outbox, times in (("before", before), ("now", ours)):
                sink.reset()
                run = result(
                    child("mail", env, folder, "--budget", str(args.mail_budget), "--outbox", outbox)
                )
                doubles = [rcpt for rcpt, count in sink.received.items() if count > 1]
                if not run["sent"]:
                    sys.exit(
                        "mail: no owed mail left to send; a bigger --requests or a shorter --mail-budget"
                    )
                if len(sink.received) != run["sent"] or doubles:
                    sys.exit(f"mail: {run['sent']} sent, {len(sink.received)} received, {len(doubles)} twice")
                sent_in_all += run["sent"]
                times.append(run["seconds"] / run["sent"])
            sample = folder / "sample.eml"
            sample.write_bytes(sink.sample)
            sink.reset()
            count = str(run["sent"])
            baseline = result(
                child(
                    "smtp",
                    dict(os.environ),
                    folder,
                    "--port",
                    str(controller.port),
                    "--count",
                    count,
                    "--sample",
                    str(sample),
                )
            )
            theirs.append(baseline["seconds"] / run["sent"])
            print(
                f"    ms a mail: before {before[-1] * 1000:5.2f}, now {ours[-1] * 1000:5.2f} "
                f"({run['sent']} mails), smtplib {theirs[-1] * 1000:5.2f}: now {ours[-1] / theirs[-1]:.2f}x "
                f"smtplib, before {before[-1] / ours[-1]:.2f}x now",
                flush=True,
            )
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM requests_app_mail WHERE sent_at > now() - interval '1 hour'")
            recorded = cursor.fetchone()[0]
        connection.close()
        if recorded != sent_in_all:
            sys.exit(f"mail: {sent_in_all} sent but {recorded} recorded as sent")
        ours_ms, theirs_ms = statistics.mean(ours) * 1000, statistics.mean(theirs) * 1000
        before_ms = statistics.mean(before) * 1000
        print(
            f"mean ms a mail: now {ours_ms:.2f}, smtplib {theirs_ms:.2f} ({ours_ms / theirs_ms:.2f}x), "
            f"before issue 10 ({BEFORE}) {before_ms:.2f} ({before_ms / ours_ms:.2f}x now); each mail "
            "received once and recorded sent (checked); what the budget left was handed back"
        )
    finally:
        controller.stop()


# --- latency -------------------------------------------------------------------------


def latency(args, folder: Path) -> None:
    import redis

    name = f"{args.database}_latency"
    url, admin_db, _kept = data.scratch_database(name, keep=False)
    redis_url = (
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + f"/{args.redis_db}"
    )
    redis.Redis.from_url(redis_url).flushdb()
    sink, controller = start_sink()
    extra = {
        "REDIS_URL": redis_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{controller.port}",
        "DELIST_PROPAGATION_DELAY": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    if args.interval:
        extra["DELIST_SWEEP_INTERVAL"] = str(args.interval)
    env = portal_env(url, folder, **extra)
    os.environ.update(env)
    processes: list[subprocess.Popen] = []
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        logging.disable(logging.INFO)  # the figures, not the services' log lines
        from django.conf import settings

        from blocklist.ip import parse_network
        from blocklist.services import entries_covering, entry_list
        from requests_app import services
        from requests_app.models import DelistRequest, State

        interval = settings.DELIST_SWEEP_INTERVAL
        requests = []
        for n in range(args.latency_requests):
            ip = f"5.61.{n // 200}.{n % 200 + 1}"
            entry_list(parse_network(ip), actor="bench")
            request = DelistRequest.objects.create(
                email=f"l{n}@mail.example.com", ip=ip, state=State.NEEDS_REVIEW
            )
            request.entries.set(entries_covering(parse_network(ip).network_address))
            requests.append(request)
        worker_log = folder / "worker.log"
        for what, argv in (
            ("worker", ["worker", "--concurrency", "2", "--loglevel", "INFO"]),
            ("beat", ["beat", "--loglevel", "INFO", "--schedule", str(folder / "celerybeat-schedule")]),
        ):
            log = open(folder / f"{what}.log", "wb")  # noqa: SIM115  (the process holds it)
            processes.append(
                subprocess.Popen(
                    [str(BIN / "celery"), "-A", "delist_portal", *argv],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        while b" ready." not in worker_log.read_bytes():
            if time.monotonic() > deadline:
                sys.exit("the Celery worker did not start; see " + str(worker_log))
            time.sleep(0.2)
        which = "set by --interval" if args.interval else "the default"
        print(
            f"\n(6) {len(requests)} approvals spread over {args.spread:.0f} s, delay 0, "
            f"sweep interval {interval} s ({which})\n",
            flush=True,
        )
        seen: dict[int, float] = {}
        stop = threading.Event()
        poller = threading.Thread(target=poll, args=(url, seen, stop), daemon=True)
        poller.start()
        rng = random.Random(6)
        offsets = sorted(rng.uniform(0, args.spread) for _ in requests)
        started = time.time()
        for request, offset in zip(requests, offsets, strict=True):
            time.sleep(max(0.0, started + offset - time.time()))
            services.request_approve(request=request, actor="bench")
        deadline = time.monotonic() + 2 * interval + 30
        while len(seen) < len(requests) and time.monotonic() < deadline:
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while len(sink.received) < len(requests) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        poller.join(timeout=5)
        if len(seen) < len(requests):
            sys.exit(f"only {len(seen)} of {len(requests)} delistings were applied")
        rows = DelistRequest.objects.filter(pk__in=[r.pk for r in requests]).values_list(
            "pk", "email", "effective_at", "completed_at"
        )
        observed, waited, mailed = [], [], []
        for pk, email, effective_at, completed_at in rows:
            observed.append(seen[pk] - effective_at.timestamp())
            waited.append((completed_at - effective_at).total_seconds())
            if email in sink.received:
                mailed.append(sink.first_at[email] - effective_at.timestamp())
        goal = interval + 5
        print(f"{'from effective_at to':44} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
        for label, values in (
            ("the next beat tick (the sweep's own `now`)", waited),
            ("the entry seen delisted", observed),
            ("the completion mail at the SMTP server", mailed),
        ):
            print(f"{label:44} {statistics.median(values):7.2f} {p99(values):7.2f} {max(values):7.2f}")
        print(
            f"\ndelisted p99 {p99(observed):.2f} s: {p99(observed) / goal:.2f} of the goal ({goal} s, the "
            f"interval + 5), {p99(observed) / p99(waited):.2f}x the wait for the next tick (p99 "
            f"{p99(waited):.2f} s; for an ideal periodic sweep {0.99 * interval:.1f}); "
            f"{len(mailed)} completion mails received"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        controller.stop()
        from django.db import connections

        connections.close_all()
        redis.Redis.from_url(redis_url).flushdb()
        drop(admin_db, name)
        admin_db.close()


def poll(url: str, seen: dict[int, float], stop: threading.Event) -> None:
    """When each request's entries are first seen delisted, from outside the worker."""
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        while not stop.is_set():
            cursor.execute(
                "SELECT m.delistrequest_id FROM requests_app_delistrequest_entries m "
                "JOIN blocklist_entry e ON e.id = m.entry_id WHERE e.delisted_at IS NOT NULL"
            )
            now = time.time()
            for (pk,) in cursor.fetchall():
                seen.setdefault(pk, now)
            time.sleep(0.1)
    connection.close()


def p99(values: list[float]) -> float:
    return sorted(values)[max(1, int(len(values) * 0.99)) - 1]


# --- the processes the parts start ---------------------------------------------------


def run_child(args) -> None:
    if args.child == "smtp":
        import smtplib

        message = Path(args.sample).read_bytes()
        with smtplib.SMTP("127.0.0.1", args.port) as client:
            started = time.perf_counter()
            for n in range(args.count):
                client.sendmail("delist@localhost", [f"b{n}@baseline.example.com"], message)
            seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "sent": args.count}))
        return
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    connection.ensure_connection()
    if args.child == "sweep":
        from requests_app.services import delistings_apply_due

        time.sleep(max(0.0, args.start_at - time.time()))
        started = time.time()
        applied = delistings_apply_due()
        print(json.dumps({"applied": applied, "started": started, "ended": time.time()}))
    elif args.child == "mail":
        from requests_app import outbox

        if args.outbox == "before":
            outbox = outbox_before()
        started = time.perf_counter()
        sent = outbox.mails_send_due(budget=args.budget)
        print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))
    elif args.child == "explain":
        print(json.dumps(explain_claims(connection, transaction, timezone)))


def outbox_before():
    """requests_app/outbox.py as it was at BEFORE, as a module of its own."""
    import types

    path = f"{BEFORE}:requests_app/outbox.py"
    source = subprocess.run(["git", "show", path], cwd=ROOT, capture_output=True, text=True, check=True)
    module = types.ModuleType("outbox_before")
    exec(compile(source.stdout, path, "exec"), module.__dict__)  # our own file, as it was
    return module


def explain_claims(connection, transaction, timezone) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the statements the claims run (each rolled back), and of the claim by
    primary key plus the owed-mail conditions that mail_send ran before issue 10."""
    from django.db.models import F
    from django.test.utils import CaptureQueriesContext

    from requests_app import outbox

    now = timezone.now()
    owed = list(outbox._unsent().order_by("pk").values_list("pk", flat=True))
    middle = owed[len(owed) // 2]
    claims = {
        "before: each mail's claim, UPDATE ... WHERE <owed> AND id = X AND due_at <= now": lambda: (
            outbox._unsent().filter(pk=middle, due_at__lte=now).update(attempts=F("attempts") + 1)
        ),
        "the batch claim of mails_send_due now": lambda: outbox._mails_claim_due(
            now=now, lease=outbox.MAIL_LEASE
        ),
        "the claim of one mail by mail_send now": lambda: outbox._mail_claim(middle, now=now),
    }
    plans: dict[str, list[str]] = {}
    for name, claim in claims.items():
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            claim()
            transaction.set_rollback(True)
        lines = []
        for query in queries.captured_queries:
            sql = query["sql"]
            if not sql.startswith(("UPDATE", "SELECT")):
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = [row[0] for row in cursor.fetchall()]
                transaction.set_rollback(True)
            lines += [sql[:160] + ("..." if len(sql) > 160 else "")]
            lines += [
                line
                for line in plan
                if any(
                    k in line
                    for k in ("Scan", "Filter", "Removed", "Execution", "Buffers: shared", "Limit", "Lock")
                )
            ][:12]
        plans[name] = lines
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--parts", default="burst,mail,latency")
    parser.add_argument("--requests", type=int, default=100_000, help="due requests in the burst")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the sweep and of its baseline each")
    parser.add_argument("--latency-requests", type=int, default=100)
    parser.add_argument("--spread", type=float, default=60, help="seconds the approvals are spread over")
    parser.add_argument(
        "--interval", type=int, default=0, help="DELIST_SWEEP_INTERVAL (default: the portal's)"
    )
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--database", default="delist_bench_sweep", help="name of the scratch database")
    parser.add_argument("--keep", action="store_true", help="keep the burst's database and reuse it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mail-budget", type=float, default=30, help="seconds of each mail sweep timed")
    parser.add_argument("--budget", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--outbox", default="now", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sample", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    parts = args.parts.split(",")
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-"))
    try:
        if "burst" in parts or "mail" in parts:
            url, admin, kept = data.scratch_database(args.database, keep=args.keep)
            try:
                mail_db = burst(args, url, kept, admin, folder)
                if "mail" in parts:
                    mail(args, folder, mail_db)
            finally:
                for name in ("_mail", "_run", "_two"):
                    drop(admin, args.database + name)
                data.clean_up(folder, admin, args.database, keep=args.keep)
        if "latency" in parts:
            latency(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
