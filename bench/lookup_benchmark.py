#!/usr/bin/env python
"""How fast "which active entries cover this IP?" is with a million entries in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/lookup_benchmark.py

Loads the same 1,000,000 active entries (plus 100,000 inactive) as export_benchmark.py into a
scratch database (delist_bench_lookup, dropped at the end unless --keep), then times the
lookup service and the JSON API for listed and unlisted IPv4 and IPv6 addresses, and shows
the query plan.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared loader)

ROOT = data.ROOT


def sample_ips(rows: int, count: int, rng: random.Random) -> dict[str, list[str]]:
    """Addresses inside listed networks of each kind, and unlisted ones of each family."""
    kinds: dict[str, list[str]] = {
        "v4 /32": [],
        "v4 in /24": [],
        "v6 in /48 or /64": [],
        "unlisted v4": [],
        "unlisted v6": [],
    }
    while min(len(v) for v in kinds.values()) < count:
        network, version, _start, prefix = data.network_of(rng.randrange(rows))
        net = ipaddress.ip_network(network)
        address = str(net.network_address + rng.randrange(min(net.num_addresses, 2**32)))
        key = "v4 /32" if prefix == 32 else "v4 in /24" if version == 4 else "v6 in /48 or /64"
        kinds[key].append(address)
        kinds["unlisted v4"].append(f"81.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        kinds["unlisted v6"].append(f"2a06:{rng.randrange(65536):x}::{rng.randrange(65536):x}")
    return {k: v[:count] for k, v in kinds.items()}


def timed(fn, items) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=500, help="per kind of address")
    parser.add_argument("--database", default="delist_bench_lookup")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    url, admin, kept = data.scratch_database(args.database, keep=args.keep)
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="delist_portal.settings",
        DATABASE_URL=url,
        DEBUG="false",
        HTTPS="false",
        SECRET_KEY="benchmark-" + "x" * 40,
        ALLOWED_HOSTS="testserver",
        DELIST_API_RATE="1000000/m",
        VAR_DIR=str(folder / "var"),
    )
    os.environ.pop("REDIS_URL", None)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True
        )
        if not kept:
            data.load(url, args.rows, folder)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.test import Client

        from blocklist.ip import parse_ip
        from blocklist.services import entries_covering

        client = Client()
        samples = sample_ips(args.rows, args.lookups, random.Random(1))
        print(f"{'addresses':18} {'service ms (median, p99)':>26} {'API ms (median, p99)':>22} listed")
        for kind, ips in samples.items():
            service = timed(lambda ip: list(entries_covering(parse_ip(ip))), ips)
            api = timed(lambda ip: client.get(f"/api/v1/ip/{ip}").json(), ips)
            listed = sum(bool(list(entries_covering(parse_ip(ip)))) for ip in ips)
            p99 = max(1, int(len(ips) * 0.99)) - 1
            print(
                f"{kind:18} {statistics.median(service):17.2f} {sorted(service)[p99]:8.2f} "
                f"{statistics.median(api):13.2f} {sorted(api)[p99]:8.2f} {listed:6}/{len(ips)}"
            )
        for kind in ("v4 in /24", "v6 in /48 or /64"):
            plan = entries_covering(parse_ip(samples[kind][0])).explain()
            probes = plan.count("Index Scan on entry_coverage_idx")
            print(
                f"\nplan ({kind}): {plan.splitlines()[0].strip()} ...; {probes} index probes on "
                f"entry_coverage_idx; sequential scans: {plan.count('Seq Scan')}"
            )
    finally:
        from django.db import connections

        connections.close_all()
        data.clean_up(folder, admin, args.database, keep=args.keep)


if __name__ == "__main__":
    main()
