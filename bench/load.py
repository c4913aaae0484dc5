#!/usr/bin/env python
"""The portal under load: 200 concurrent clients for 60 s against gunicorn, beside /healthz.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/load.py

Starts the portal as `docker compose` does (gunicorn with gunicorn.conf.py, a Celery worker and
beat) on the production settings (DEBUG=false; HTTPS=false, since this is loopback), a scratch
PostgreSQL database (delist_bench_load beside DATABASE_URL's, dropped at the end), Redis db 9
(flushed before and after) and an SMTP sink the worker delivers to. It imports some listed
entries, then drives:

1. the baseline: the same number of clients asking /healthz (Django's middleware and a view
   whose answer each process reuses for 5 s), for --baseline-seconds;
2. the load: lookups (/?ip=), API calls (/api/v1/ip/<ip>), status pages of existing requests and
   submissions (POST /request with the CSRF token of the start page), for --seconds;

and prints requests/s, p50 and p99 latency per kind beside the baseline, the count of 5xx
(must be 0: the exit code is 1 otherwise) and of 429s, where the CPU went, and how long the
worker took to send every confirmation mail. Each client waits for an answer before it sends
its next request (a closed loop) on a new connection, as a proxy in front of gunicorn would.
Everything goes to 127.0.0.1 only, and every request has a time-out: the run stops by itself.
WEB_CONCURRENCY and GUNICORN_THREADS pass through to gunicorn.conf.py, to compare sizings.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared scratch-database helpers)
import lookup_benchmark as lookup  # noqa: E402  (the HTTP client, the production env, percentiles)

ROOT = data.ROOT
BIN = Path(sys.executable).parent
HOST = lookup.HOST  # the HTTP client connects there
REQUEST_TIMEOUT = 60  # seconds: longer than gunicorn's own timeout, which should fire first
# Shares of each kind of request in the load: senders look up and submit, mail servers ask the API.
MIX = {"lookup": 35, "api": 35, "status": 20, "submit": 10}
# Per-client limits all count 127.0.0.1, and the mail limits would stop submissions after a few
# hundred: raised so that the run measures the portal, not its 429 page.
RATES = {
    "DELIST_SUBMIT_RATE": "1000000/m",
    "DELIST_LOOKUP_RATE": "1000000/m",
    "DELIST_API_RATE": "1000000/m",
    "DELIST_MAILBOX_RATE": "1000/h",
    "DELIST_DOMAIN_RATE": "1000000/h",
    "DELIST_MAIL_RATE": "1000000/h",
}
SINK = "aiosmtpd.handlers.Sink"  # accepts every mail and keeps none
ALONE = 20  # requests of each kind sent one at a time before the load, for the "alone" column
CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


async def http(port: int, method: str, path: str, *, body: bytes = b"", headers: str = ""):
    """(status, headers, body) of one request on a new connection."""
    return await lookup.http(port, lookup.request_bytes(method, path, port, body=body, headers=headers))


@dataclass
class Kind:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # no answer at all


@dataclass
class Phase:
    kinds: dict[str, Kind] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def kind(self, name: str) -> Kind:
        return self.kinds.setdefault(name, Kind())

    def everything(self) -> Kind:
        total = Kind()
        for kind in self.kinds.values():
            total.latencies += kind.latencies
            total.statuses += kind.statuses
            total.failures += kind.failures
        return total


@dataclass
class Sender:
    """A client's CSRF cookie and token, from one visit of the start page."""

    cookie: str
    token: str


class Targets:
    """The addresses the clients ask about and submit, and the status keys seen so far."""

    def __init__(self, listed_v4: list[str], in_ranges: list[str], in_v6: list[str], rng: random.Random):
        self.listed_v4, self.in_ranges, self.in_v6 = listed_v4, in_ranges, in_v6
        self.rng = rng
        self.status_keys: list[str] = []
        self.submitted = 0

    def ip(self) -> str:
        """Mostly listed addresses (single, inside a range, IPv6), some that are not listed."""
        rng, roll = self.rng, self.rng.random()
        if roll < 0.5:
            return rng.choice(self.listed_v4)
        if roll < 0.7:
            return rng.choice(self.in_ranges)
        if roll < 0.85:
            return rng.choice(self.in_v6)
        return f"81.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def email(self) -> str:
        # A mailbox of its own each time, over a hundred domains: no mail limit is shared.
        self.submitted += 1
        return f"load{self.submitted}-{secrets.token_hex(3)}@mx{self.submitted % 100}.example.net"


async def visit_start_page(port: int) -> Sender:
    status, headers, body = await http(port, "GET", "/")
    cookie = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", ""))
    token = CSRF_INPUT.search(body)
    if status != 200 or not cookie or not token:
        raise SystemExit(f"the start page gave no CSRF cookie and token (HTTP {status})")
    return Sender(cookie[1], token[1].decode())


async def submit(port: int, sender: Sender, targets: Targets, ip: str | None = None):
    body = urlencode(
        {"csrfmiddlewaretoken": sender.token, "email": targets.email(), "ip": ip or targets.ip()}
    ).encode()
    answer = await http(
        port,
        "POST",
        "/request",
        body=body,
        headers=f"Cookie: csrftoken={sender.cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
    )
    location = answer[1].get("location", "")
    if answer[0] == 302 and location.startswith("/status/"):
        targets.status_keys.append(location.removeprefix("/status/"))
    return answer


def request_of(kind: str, port: int, sender: Sender, targets: Targets):
    """The coroutine of one request of this kind."""
    if kind == "healthz":
        return http(port, "GET", "/healthz")
    if kind == "lookup":
        return http(port, "GET", f"/?ip={quote(targets.ip())}")
    if kind == "api":
        return http(port, "GET", f"/api/v1/ip/{quote(targets.ip())}")
    if kind == "status":
        return http(port, "GET", f"/status/{targets.rng.choice(targets.status_keys)}")
    return submit(port, sender, targets)


async def client(
    port: int, mix: dict[str, int], sender: Sender, targets: Targets, phase: Phase, until: float
):
    names, weights = list(mix), list(mix.values())
    while time.monotonic() < until:
        name = targets.rng.choices(names, weights)[0]
        kind = phase.kind(name)
        started = time.perf_counter()
        try:
            status, _headers, _body = await asyncio.wait_for(
                request_of(name, port, sender, targets), REQUEST_TIMEOUT
            )
        except (TimeoutError, OSError) as e:
            kind.failures[type(e).__name__] += 1
            await asyncio.sleep(0.1)  # a refused connection must not turn into a busy loop
            continue
        kind.latencies.append((time.perf_counter() - started) * 1000)
        kind.statuses[status] += 1


async def drive(port: int, clients: int, mix: dict[str, int], senders, targets, seconds: float) -> Phase:
    phase = Phase()
    started = time.monotonic()
    await asyncio.gather(
        *(client(port, mix, senders[n], targets, phase, started + seconds) for n in range(clients))
    )
    phase.seconds = time.monotonic() - started
    return phase


# --- where the CPU went -------------------------------------------------------------


class CpuMeter:
    """CPU seconds (user + system) used so far by each of the portal's processes and their children,
    by this database's PostgreSQL backends and by Redis, read from /proc."""

    def __init__(self, roots: dict[str, int], admin, database: str):
        self.roots, self.admin, self.database = roots, admin, database

    def sample(self) -> dict[str, dict[int, float]]:
        parents, used, names = lookup.processes()
        groups = {}
        for name, root in self.roots.items():
            tree, grew = {root}, True
            while grew:
                more = {pid for pid, parent in parents.items() if parent in tree} - tree
                tree |= more
                grew = bool(more)
            groups[name] = tree
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database])
            groups["postgres"] = {pid for (pid,) in cursor.fetchall()}
        groups["redis"] = {pid for pid, name in names.items() if name == "redis-server"}
        return {name: {pid: used[pid] for pid in pids if pid in used} for name, pids in groups.items()}


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measured(meter: CpuMeter, run) -> Phase:
    """Run a phase and record the cores each process used during it."""
    before, busy, own = meter.sample(), machine_busy(), own_cpu()
    phase = await run
    after = meter.sample()
    phase.cpu = {
        # A process started during the phase (a new database backend) counts from zero.
        name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in pids.items()) / phase.seconds
        for name, pids in after.items()
    }
    phase.cpu["this client"] = (own_cpu() - own) / phase.seconds
    phase.cpu["everything else"] = (machine_busy() - busy) / phase.seconds - sum(phase.cpu.values())
    return phase


# --- set-up ---------------------------------------------------------------------------


def write_list(path: Path, singles: int, ranges: int, v6: int) -> tuple[list[str], list[str], list[str]]:
    """A plain list of single IPv4 addresses, IPv4 /24s and IPv6 /64s; one address inside each."""
    listed_v4 = [data.v4(0x05000000 + n * 7) for n in range(singles)]
    range_nets = [data.v4(0x25000000 + n * 256) for n in range(ranges)]
    v6_nets = [ipaddress.IPv6Address((0x2A05 << 112) + (n << 64)) for n in range(v6)]
    with path.open("w") as out:
        out.write("# listed by bench/load.py\n")
        out.writelines(f"{ip}\n" for ip in listed_v4)
        out.writelines(f"{net}/24\n" for net in range_nets)
        out.writelines(f"{net}/64\n" for net in v6_nets)
    in_ranges = [data.v4(0x25000000 + n * 256 + 77) for n in range(ranges)]
    in_v6 = [str(net + 0x1234) for net in v6_nets]
    return listed_v4, in_ranges, in_v6


class Processes:
    """The portal's processes, each in a session of its own so that it stops with its children."""

    def __init__(self, env: dict, folder: Path):
        self.env, self.folder = env, folder
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *argv: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        self.running[name] = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


async def wait_healthy(port: int, processes: Processes) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, process in processes.running.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}:\n{processes.log(name)[-3000:]}")
        try:
            if (await http(port, "GET", "/healthz"))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit(f"/healthz did not answer ok in 60 s:\n{processes.log('gunicorn')[-3000:]}")


def analyze(url: str) -> None:
    """Give the planner the statistics autovacuum gathers within a minute of an import.

    The server here may run with autovacuum off, and the figures must not depend on whether it
    ran: with an earlier lookup query, a table never analyzed made lookups 80 times slower.
    """
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()


def outbox(url: str) -> tuple[int, int]:
    """(confirmation mails owed in all, of them sent)."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(sent_at) FROM requests_app_mail WHERE kind = 'confirmation'")
        owed, sent = cursor.fetchone()
    connection.close()
    return owed, sent


# --- the report -----------------------------------------------------------------------


def report(alone: dict[str, float], baseline: Phase, load: Phase) -> int:
    """Print the table; return the number of 5xx answers and of requests that got no answer."""
    base = baseline.everything()
    base_rate = len(base.latencies) / baseline.seconds
    base_p50, base_p99 = lookup.percentile(base.latencies, 0.5), lookup.percentile(base.latencies, 0.99)
    header = (
        f"{'phase':8} {'kind':7} {'alone ms':>8} {'requests':>8} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p50 ÷ base':>10} {'p99 ÷':>5} {'5xx':>4} {'429':>4} {'no answer':>9}  answers"
    )
    print(header)
    print("-" * len(header))
    bad = 0
    rows = [("baseline", "healthz", base, baseline.seconds)]
    rows += [("load", name, load.kinds[name], load.seconds) for name in MIX if name in load.kinds]
    rows.append(("load", "all", load.everything(), load.seconds))
    for phase_name, name, kind, seconds in rows:
        p50, p99 = lookup.percentile(kind.latencies, 0.5), lookup.percentile(kind.latencies, 0.99)
        server_errors = sum(n for status, n in kind.statuses.items() if status >= 500)
        failures = sum(kind.failures.values())
        if name != "all":
            bad += server_errors + failures
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(kind.statuses.items()))
        answers += "".join(f", {why}: {n}" for why, n in kind.failures.items())
        alone_ms = f"{alone[name]:.1f}" if name in alone else ""
        print(
            f"{phase_name:8} {name:7} {alone_ms:>8} {len(kind.latencies):8} "
            f"{len(kind.latencies) / seconds:6.1f} {p50:7.1f} {p99:7.1f} {p50 / base_p50:10.2f} "
            f"{p99 / base_p99:5.2f} {server_errors:4} {kind.statuses[429]:4} {failures:9}  {answers}"
        )
    all_rate = len(load.everything().latencies) / load.seconds
    print(f"\nthroughput under load: {all_rate:.1f} requests/s, {all_rate / base_rate:.2f} × the baseline's")
    for phase_name, phase in (("baseline", baseline), ("load", load)):
        used = ", ".join(f"{name} {cores:.2f}" for name, cores in phase.cpu.items())
        print(f"cores busy during the {phase_name} (of {os.cpu_count()}): {used}")
    return bad


def start_portal(processes: Processes, port: int, smtp_port: int) -> None:
    python, celery = sys.executable, str(BIN / "celery")
    processes.start("smtp", python, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{smtp_port}", "-c", SINK)
    # As docker-compose.yml starts them; the bind address is the only difference.
    processes.start("gunicorn", str(BIN / "gunicorn"), "--bind", f"{HOST}:{port}", "delist_portal.wsgi")
    processes.start("worker", celery, "-A", "delist_portal", "worker", "--loglevel", "INFO")
    schedule = str(processes.folder / "celerybeat-schedule")
    processes.start(
        "beat", celery, "-A", "delist_portal", "beat", "--loglevel", "INFO", "--schedule", schedule
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="length of the load")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="length of the /healthz baseline")
    parser.add_argument("--entries", type=int, default=20_000, help="single IPv4 addresses listed")
    parser.add_argument("--redis", default=f"redis://{HOST}:6379/9", help="a Redis database of its own")
    parser.add_argument("--database", default="delist_bench_load", help="name of the scratch database")
    args = parser.parse_args()
    if not 1 <= args.clients <= 1000 or not 0 < args.seconds <= 600 or not 0 < args.baseline_seconds <= 600:
        parser.error("--clients must be 1 to 1000, and each phase 0 to 600 seconds")
    if not args.redis.startswith(f"redis://{HOST}:"):
        parser.error(f"--redis must be on {HOST}: this benchmark sends nothing off the machine")

    url, admin, _kept = data.scratch_database(args.database, keep=False)
    redis.Redis.from_url(args.redis).flushdb()
    folder = Path(tempfile.mkdtemp(prefix="delist-load-"))
    port, smtp_port = lookup.free_port(), lookup.free_port()
    env = lookup.scratch_env(
        url,
        folder,
        ALLOWED_HOSTS=HOST,
        REDIS_URL=args.redis,
        EMAIL_URL=f"smtp://{HOST}:{smtp_port}",
        PORTAL_BASE_URL=f"http://{HOST}:{port}",
        **RATES,
    )
    gunicorn = lookup.gunicorn_conf(env)
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start (shared: "
        f"other work shows as 'everything else' below); gunicorn: {gunicorn['workers']} workers × "
        f"{gunicorn['threads']} threads (accepting {gunicorn.get('worker_connections', 1000)} connections "
        f"each), timeout {gunicorn['timeout']} s"
        + (f", GUNICORN_CMD_ARGS={env['GUNICORN_CMD_ARGS']!r}" if "GUNICORN_CMD_ARGS" in env else "")
    )
    processes = Processes(env, folder)
    bad = 0
    try:
        started = time.monotonic()
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        listed_v4, in_ranges, in_v6 = write_list(folder / "listed.txt", args.entries, 2_000, 2_000)
        imported = subprocess.run(
            [*manage, "import_blocklist", str(folder / "listed.txt"), "--source", "bench"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        print(f"imported: {imported.stdout.strip()}")
        analyze(url)
        start_portal(processes, port, smtp_port)
        asyncio.run(wait_healthy(port, processes))
        print(f"set-up took {time.monotonic() - started:.0f} s\n")
        targets = Targets(listed_v4, in_ranges, in_v6, random.Random(1))
        bad = asyncio.run(run(args, port, url, admin, processes, targets))
        log = processes.log("gunicorn")
        errors = sum(" ERROR " in line or "[ERROR]" in line for line in log.splitlines())
        print(f"gunicorn log: {log.count('WORKER TIMEOUT')} worker time-outs, {errors} error lines")
    finally:
        processes.stop()
        redis.Redis.from_url(args.redis).flushdb()
        data.clean_up(folder, admin, args.database, keep=False)
    if bad:
        sys.exit(f"{bad} requests got a 5xx or no answer at all: see the table above")


async def run(args, port: int, url: str, admin, processes: Processes, targets: Targets) -> int:
    meter = CpuMeter({name: p.pid for name, p in processes.running.items()}, admin, args.database)
    senders = await asyncio.gather(*(visit_start_page(port) for _ in range(args.clients)))
    # Requests whose status pages the load asks for, made before it starts.
    for n in range(0, 100, 10):
        await asyncio.gather(
            *(submit(port, senders[0], targets, targets.listed_v4[n + i]) for i in range(10))
        )
    if not targets.status_keys:
        raise SystemExit("no submission was accepted before the load: see the gunicorn log")
    # Each kind one request at a time with nothing else running: the cost of the work itself.
    alone = {}
    for name in ("healthz", *MIX):
        times = []
        for _ in range(ALONE):
            started = time.perf_counter()
            await request_of(name, port, senders[0], targets)
            times.append((time.perf_counter() - started) * 1000)
        alone[name] = lookup.percentile(times, 0.5)
    baseline = await measured(
        meter, drive(port, args.clients, {"healthz": 1}, senders, targets, args.baseline_seconds)
    )
    load = await measured(meter, drive(port, args.clients, MIX, senders, targets, args.seconds))
    bad = report(alone, baseline, load)
    # Nothing lost: every confirmation the load asked for goes out, soon after the load stops.
    deadline, stopped = time.monotonic() + 30, time.monotonic()
    owed, sent = outbox(url)
    while sent < owed and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        owed, sent = outbox(url)
    print(
        f"confirmation mails: {owed} owed, {sent} sent to the SMTP sink "
        f"{time.monotonic() - stopped:.1f} s after the load stopped"
        + ("" if sent == owed else f"; {owed - sent} still in the outbox (the sweep sends them later)")
    )
    if sent < owed:
        print(f"--- the worker's log, last lines ---\n{processes.log('worker')[-3000:]}")
    return bad


if __name__ == "__main__":
    main()
