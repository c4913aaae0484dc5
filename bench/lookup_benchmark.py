#!/usr/bin/env python
"""How fast "which active entries cover this IP?" is with a million entries in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/lookup_benchmark.py

Loads 1,000,000 active entries (70% IPv4 /32, 20% IPv4 /24 and /16, 10% IPv6 /48 and /64) plus
100,000 inactive into a scratch database (delist_bench_lookup, dropped at the end unless --keep),
then, each figure beside its baseline from the same run:

1. the service (`lookup`; and the `entries_covering` queryset it compiles once) for listed and
   unlisted IPv4 and IPv6 addresses against an
   ORM primary-key fetch on the same connection, with the shipped SP-GiST index and with a GiST
   one in its place (each dropped in turn inside a rolled-back transaction), rounds interleaved;
   the raw SQL of the same query shows what the ORM adds; and the plan;
2. `GET /api/v1/ip/<ip>` under gunicorn (gunicorn.conf.py, production settings, Redis for the
   rate limit) against the same endpoint answering 400 for an invalid IP (the framework's own
   cost) and against /healthz, whose answer is cached for 5 s (a bare view through the same
   middleware), in interleaved phases of closed-loop clients.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared loader)

ROOT = data.ROOT
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30  # seconds: every request of the HTTP phases ends by then
GIST_INDEX = (
    "CREATE INDEX entry_cidr_gist_idx ON blocklist_entry USING gist (network_cidr inet_ops) "
    "WHERE delisted_at IS NULL"
)
INDEXES = {"SP-GiST": "entry_cidr_idx", "GiST": "entry_cidr_gist_idx"}


def sample_ips(rows: int, count: int, rng: random.Random) -> dict[str, list[str]]:
    """Addresses inside listed networks of each kind, and unlisted ones of each family."""
    kinds: dict[str, list[str]] = {
        "v4 /32": [],
        "v4 in /24 or /16": [],
        "v6 in /48 or /64": [],
        "unlisted v4": [],
        "unlisted v6": [],
    }
    while min(len(v) for v in kinds.values()) < count:
        network, version, _start, prefix = data.network_of_large(rng.randrange(rows))
        net = ipaddress.ip_network(network)
        address = str(net.network_address + rng.randrange(min(net.num_addresses, 2**32)))
        key = "v4 /32" if prefix == 32 else "v4 in /24 or /16" if version == 4 else "v6 in /48 or /64"
        kinds[key].append(address)
        kinds["unlisted v4"].append(f"81.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        kinds["unlisted v6"].append(f"2a06:{rng.randrange(65536):x}::{rng.randrange(65536):x}")
    return {k: v[:count] for k, v in kinds.items()}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share + 0.999999) - 1)] if ordered else float("nan")


def scratch_env(url: str, folder: Path, **extra: str) -> dict[str, str]:
    """The production settings on loopback (DEBUG off, plain HTTP), for this process and gunicorn."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DATABASE_URL": url,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": f"{HOST},testserver",
        "PORTAL_BASE_URL": "https://delist.example.org",
        "VAR_DIR": str(folder / "var"),
        **extra,
    }


# --- 1. the service -----------------------------------------------------------------------


def measure_service(samples: dict[str, list[str]], rounds: int) -> None:
    from django.db import connection, transaction

    from blocklist.ip import parse_ip
    from blocklist.models import Entry
    from blocklist.services import entries_covering
    from blocklist.services import lookup as service_lookup

    addresses = {kind: [parse_ip(ip) for ip in ips] for kind, ips in samples.items()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM blocklist_entry")
        low, high = cursor.fetchone()
    rng = random.Random(2)
    raw_sql = (
        "SELECT * FROM blocklist_entry WHERE network_cidr >>= %s::inet AND delisted_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > %s) ORDER BY prefix_len, listed_at"
    )
    # (index, kind) -> lists of milliseconds, gathered over every round
    lookup: dict[tuple[str, str], list[float]] = {}
    pk: dict[tuple[str, str], list[float]] = {}
    raw: dict[tuple[str, str], list[float]] = {}
    queryset: dict[tuple[str, str], list[float]] = {}
    listed: Counter = Counter()

    def timed(fn: Callable[[], object]) -> tuple[float, object]:
        started = time.perf_counter()
        result = fn()
        return (time.perf_counter() - started) * 1000, result

    for _round in range(rounds):
        for name in INDEXES:
            with transaction.atomic():
                # The other index is gone for this transaction only: the planner has one choice.
                other = next(index for other_name, index in INDEXES.items() if other_name != name)
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP INDEX {other}")
                for kind, ips in addresses.items():
                    key = (name, kind)
                    for ip in ips:
                        # Interleaved one by one: the baseline sees the same moment of a noisy machine.
                        ms, _ = timed(lambda: Entry.objects.get(pk=rng.randint(low, high)))
                        pk.setdefault(key, []).append(ms)
                        ms, found = timed(lambda ip=ip: service_lookup(ip))
                        lookup.setdefault(key, []).append(ms)
                        listed[key] += bool(found)
                        # The same question built and compiled by the ORM for each call.
                        ms, _ = timed(lambda ip=ip: list(entries_covering(ip)))
                        queryset.setdefault(key, []).append(ms)
                        ms, _ = timed(lambda ip=ip: raw_lookup(connection, raw_sql, ip))
                        raw.setdefault(key, []).append(ms)
                transaction.set_rollback(True)

    print(
        f"{'index':8} {'addresses':17} {'lookup ms':>9} {'p99':>6} {'PK fetch ms':>11} {'ratio':>6} "
        f"{'raw SQL ms':>10} {'raw ratio':>9} {'queryset ms':>11} {'qs ratio':>8}  listed"
    )
    for name in INDEXES:
        for kind in addresses:
            key = (name, kind)
            lookup_ms, pk_ms, raw_ms, qs_ms = (statistics.median(v[key]) for v in (lookup, pk, raw, queryset))
            print(
                f"{name:8} {kind:17} {lookup_ms:9.3f} {percentile(lookup[key], 0.99):6.2f} {pk_ms:11.3f} "
                f"{lookup_ms / pk_ms:5.2f}x {raw_ms:10.3f} {raw_ms / pk_ms:8.2f}x "
                f"{qs_ms:11.3f} {qs_ms / pk_ms:7.2f}x  "
                f"{listed[key]}/{len(lookup[key])}"
            )


def print_plans(samples: dict[str, list[str]]) -> None:
    """The plan of the service's query with the shipped index alone; stops if it scans the table."""
    from blocklist.ip import parse_ip
    from blocklist.services import entries_covering

    for kind in ("v4 in /24 or /16", "v6 in /48 or /64"):
        query = entries_covering(parse_ip(samples[kind][0]))
        print(f"\nplan ({kind}), EXPLAIN ANALYZE:\n{query.explain(analyze=True)}")
        if "Seq Scan" in query.explain():
            sys.exit("the lookup scans the table")


def raw_lookup(connection, sql: str, ip) -> list[tuple]:
    """The service's query without the ORM: what building and reading it through Django costs."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [str(ip), datetime.now(UTC)])
        return cursor.fetchall()


def index_build(admin_url: str) -> None:
    """Build the GiST index beside the shipped SP-GiST one; print both builds' time and size."""
    import psycopg2

    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS entry_cidr_gist_idx")
        cursor.execute("DROP INDEX entry_cidr_idx")
        started = time.monotonic()
        cursor.execute(
            "CREATE INDEX entry_cidr_idx ON blocklist_entry USING spgist (network_cidr inet_ops) "
            "WHERE delisted_at IS NULL"
        )
        spgist_s = time.monotonic() - started
        started = time.monotonic()
        cursor.execute(GIST_INDEX)
        gist_s = time.monotonic() - started
        cursor.execute("ANALYZE blocklist_entry")
        cursor.execute(
            "SELECT pg_relation_size('entry_cidr_idx'), pg_relation_size('entry_cidr_gist_idx'), "
            "pg_relation_size('entry_coverage_idx')"
        )
        spgist_b, gist_b, coverage_b = cursor.fetchone()
    connection.close()
    print(
        f"index builds: SP-GiST {spgist_s:.1f} s, {spgist_b / 1e6:.0f} MB; GiST {gist_s:.1f} s, "
        f"{gist_b / 1e6:.0f} MB (the portable (network_start, prefix_len) btree: {coverage_b / 1e6:.0f} MB)\n"
    )


# --- 2. over HTTP, under gunicorn ---------------------------------------------------------


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    # CPU seconds each part of the system used during the phase (this client included)
    cpu: Counter = field(default_factory=Counter)

    def add(self, other: Phase) -> None:
        self.latencies += other.latencies
        self.statuses += other.statuses
        self.failures += other.failures
        self.seconds += other.seconds
        self.cpu += other.cpu

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (Connection: close), as a proxy in front would send it."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        raise ConnectionError(f"no HTTP answer: {raw[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        name = name.lower()
        headers[name] = f"{headers[name]}; {value}" if name in headers else value
    return int(lines[0].split(" ", 2)[1]), headers, body


def request_bytes(method: str, path: str, port: int, *, body: bytes = b"", headers: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def processes() -> tuple[dict[int, int], dict[int, float], dict[int, str]]:
    """Every process's parent, CPU seconds so far (user + system) and name, read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, used, names = {}, {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, rest = stat.split(" (", 1)[1].rsplit(")", 1)
        fields, pid = rest.split(), int(entry.name)
        parents[pid], names[pid] = int(fields[1]), name
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return parents, used, names


class CpuMeter:
    """CPU seconds used so far by gunicorn (its whole tree), PostgreSQL (every backend of the
    scratch database), Redis and this client, read from /proc."""

    def __init__(self, gunicorn_pid: int, admin, database: str):
        self.gunicorn_pid, self.admin, self.database = gunicorn_pid, admin, database

    def sample(self) -> Counter:
        parents, used, names = processes()
        tree = {self.gunicorn_pid}
        while more := {pid for pid, parent in parents.items() if parent in tree} - tree:
            tree |= more
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database])
            backends = {pid for (pid,) in cursor.fetchall()}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return Counter(
            {
                "gunicorn": sum(used.get(pid, 0.0) for pid in tree),
                "postgres": sum(used.get(pid, 0.0) for pid in backends),
                "redis": sum(cpu for pid, cpu in used.items() if names[pid] == "redis-server"),
                "client": usage.ru_utime + usage.ru_stime,
            }
        )


async def drive(
    port: int,
    clients: int,
    seconds: float,
    next_request: Callable[[int], bytes],
    expect: set[int],
    meter: CpuMeter,
) -> Phase:
    """`clients` closed loops for `seconds`: each sends its next request once the last is answered."""
    phase = Phase()
    started, cpu = time.monotonic(), meter.sample()
    until = started + seconds

    async def client(n: int) -> None:
        while time.monotonic() < until:
            sent = time.perf_counter()
            try:
                status, _headers, _body = await asyncio.wait_for(http(port, next_request(n)), REQUEST_TIMEOUT)
            except (TimeoutError, OSError) as e:
                phase.failures[type(e).__name__] += 1
                await asyncio.sleep(0.1)  # a refused connection must not become a busy loop
                continue
            phase.latencies.append((time.perf_counter() - sent) * 1000)
            phase.statuses[status] += 1
            if status not in expect:
                phase.failures[f"HTTP {status}"] += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    phase.seconds = time.monotonic() - started
    phase.cpu = meter.sample() - cpu
    return phase


def has_entries(url: str) -> bool:
    """Whether a kept database holds a list already (a run stopped before loading leaves it empty)."""
    import psycopg2

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM blocklist_entry)")
        found = cursor.fetchone()[0]
    connection.close()
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Gunicorn:
    """gunicorn as docker compose starts it (gunicorn.conf.py), bound to loopback, in its own session."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.port = free_port()
        self.log = folder / "gunicorn.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "--bind", f"{HOST}:{self.port}", "delist_portal.wsgi"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"gunicorn exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                status, _h, _b = asyncio.run(http(self.port, request_bytes("GET", "/healthz", self.port)))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        sys.exit(f"/healthz did not answer ok in 60 s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def gunicorn_conf(env: dict[str, str]) -> dict:
    """What gunicorn.conf.py makes of this environment: the sizing that was measured."""
    import runpy

    saved = os.environ.copy()
    os.environ.update(env)
    if str(ROOT) not in sys.path:  # the file imports the portal's modules, as gunicorn does from ROOT
        sys.path.insert(0, str(ROOT))
    try:
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gunicorn_sizing(env: dict[str, str]) -> str:
    conf = gunicorn_conf(env)
    return f"{conf['workers']} workers x {conf['threads']} threads"


def run_phases(
    port: int,
    phases: dict[str, tuple[Callable[[int], bytes], set[int]]],
    *,
    clients: int,
    seconds: float,
    rounds: int,
    meter: CpuMeter,
) -> dict[str, Phase]:
    """Every phase once per round, in turn, so that each sees the machine as the others did."""
    totals = {name: Phase() for name in phases}
    for _round in range(rounds):
        for name, (next_request, expect) in phases.items():
            totals[name].add(asyncio.run(drive(port, clients, seconds, next_request, expect, meter)))
    return totals


def print_phases(totals: dict[str, Phase], baselines: list[str]) -> None:
    """Throughput and latency beside the baselines', then the CPU each request cost, by process."""
    header = f"{'phase':24} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}" + "".join(
        f" {'÷ ' + name:>24}" for name in baselines
    )
    print(header)
    print("-" * len(header))
    for name, phase in totals.items():
        ratios = "".join(f" {phase.rate / totals[b].rate:23.2f}x" for b in baselines)
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(phase.statuses.items()))
        failures = "".join(f", {why}: {n}" for why, n in phase.failures.items())
        print(
            f"{name:24} {phase.rate:7.1f} {percentile(phase.latencies, 0.5):7.1f} "
            f"{percentile(phase.latencies, 0.99):7.1f}{ratios}  ({answers}{failures})"
        )
    parts = ["gunicorn", "postgres", "redis", "client"]
    print(f"\n{'CPU ms per request':24}" + "".join(f" {part:>9}" for part in parts) + f" {'all':>9}")
    for name, phase in totals.items():
        count = len(phase.latencies) or 1
        costs = [phase.cpu[part] * 1000 / count for part in parts]
        print(f"{name:24}" + "".join(f" {cost:9.2f}" for cost in costs) + f" {sum(costs):9.2f}")


def measure_api(env: dict[str, str], folder: Path, samples: dict[str, list[str]], admin, args) -> int:
    from urllib.parse import quote

    server = Gunicorn(env, folder)
    try:
        server.wait_healthy()
        port = server.port
        meter = CpuMeter(server.process.pid, admin, args.database)

        def cycling(paths: list[str]) -> Callable[[int], bytes]:
            requests = [request_bytes("GET", path, port) for path in paths]
            position = iter(range(10**12))
            return lambda _client: requests[next(position) % len(requests)]

        api = "/api/v1/ip/"
        listed_v4 = samples["v4 /32"] + samples["v4 in /24 or /16"]
        phases = {
            "bare view (/healthz)": (cycling(["/healthz"]), {200}),
            "API, invalid IP (400)": (cycling([f"{api}not-an-ip-{n}" for n in range(100)]), {400}),
            "API, listed IPv4": (cycling([api + ip for ip in listed_v4]), {200}),
            "API, listed IPv6": (cycling([api + quote(ip) for ip in samples["v6 in /48 or /64"]]), {200}),
            "API, unlisted": (
                cycling([api + quote(ip) for ip in samples["unlisted v4"] + samples["unlisted v6"]]),
                {200},
            ),
        }
        print(
            f"\nGET over HTTP under gunicorn ({gunicorn_sizing(env)}), {args.clients} closed-loop clients, "
            f"{args.rounds} rounds of {args.seconds:.0f} s per phase, interleaved:"
        )
        totals = run_phases(
            port, phases, clients=args.clients, seconds=args.seconds, rounds=args.rounds, meter=meter
        )
        print_phases(totals, ["API, invalid IP (400)", "bare view (/healthz)"])
        lookups = [totals[name] for name in phases if name.startswith("API, ") and "400" not in name]
        worst = min(phase.rate for phase in lookups)
        invalid, bare = totals["API, invalid IP (400)"].rate, totals["bare view (/healthz)"].rate
        print(
            f"\nslowest lookup phase: {invalid / worst:.2f}x the 400 path's cost "
            f"(goal: at most 1.5x), {worst / bare:.0%} of the bare view's "
            "throughput (goal: at least 50%)"
        )
        return sum(sum(phase.failures.values()) for phase in totals.values())
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=300, help="per kind of address and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=8, help="length of one HTTP phase")
    parser.add_argument("--skip-http", action="store_true", help="only the service")
    parser.add_argument("--redis", default=f"redis://{HOST}:6379/11", help="a Redis database of its own")
    parser.add_argument("--database", default="delist_bench_lookup")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 500 or not 0 < args.seconds <= 120 or not 1 <= args.rounds <= 20:
        parser.error("--clients must be 1 to 500, --seconds 0 to 120, --rounds 1 to 20")
    if not args.redis.startswith(f"redis://{HOST}:"):
        parser.error(f"--redis must be on {HOST}: this benchmark sends nothing off the machine")

    url, admin, kept = data.scratch_database(args.database, keep=args.keep)
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-"))
    env = scratch_env(url, folder, REDIS_URL=args.redis, DELIST_API_RATE="9999999/m")
    os.environ.update(env)
    failures = 0
    try:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
        migrate = [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"]
        subprocess.run(migrate, cwd=ROOT, check=True)
        if not kept or not has_entries(url):
            data.load(url, args.rows, folder, layout=data.network_of_large)
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
            f"{args.rows:,} active entries"
        )
        index_build(url)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        samples = sample_ips(args.rows, args.lookups, random.Random(1))
        measure_service(samples, args.rounds)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX entry_cidr_gist_idx")  # from here on, as shipped
        print_plans(samples)
        connection.close()
        if not args.skip_http:
            failures = measure_api(env, folder, samples, admin, args)
    finally:
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        redis.Redis.from_url(args.redis).flushdb()
        data.clean_up(folder, admin, args.database, keep=args.keep)
    if failures:
        sys.exit(f"{failures} requests failed or got an unexpected status")


if __name__ == "__main__":
    main()
