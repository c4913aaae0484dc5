"""One service answers "which active entries cover this IP?", through an index."""

import ipaddress
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from blocklist.ip import network_start, parse_ip
from blocklist.models import Entry
from blocklist.services import entries_covering, entries_delist
from tests.conftest import IN_RANGE_IP, LISTED_IP, UNLISTED_IP


def covering(ip):
    return [e.network for e in entries_covering(parse_ip(ip))]


def test_it_finds_single_addresses_ranges_and_ipv6(listed):
    assert covering(LISTED_IP) == ["5.61.14.7/32"]
    assert covering(IN_RANGE_IP) == ["37.120.8.0/24"]
    assert covering("2a05:d018:1:2::abcd") == ["2a05:d018:1:2::/64"]
    assert covering(UNLISTED_IP) == []
    assert covering("37.120.9.1") == []
    assert covering("2a05:d018:1:3::1") == []


def test_it_returns_every_covering_entry_broadest_first(listing):
    listing("37.120.0.0/16")
    listing("37.120.8.0/24")
    listing("37.120.8.9")
    assert covering("37.120.8.9") == ["37.120.0.0/16", "37.120.8.0/24", "37.120.8.9/32"]


def test_delisted_and_expired_entries_do_not_cover(listing):
    gone = listing(LISTED_IP)
    entries_delist([gone.pk], actor="admin")
    listing(IN_RANGE_IP, expires_at=timezone.now() - timedelta(minutes=1))
    assert covering(LISTED_IP) == []
    assert covering(IN_RANGE_IP) == []


def _bulk_entries(count: int) -> None:
    rows = []
    for i in range(count):
        network = ipaddress.ip_network((0x05000000 + i * 256, 24))
        rows.append(
            Entry(
                network=str(network),
                version=4,
                network_start=network_start(network),
                prefix_len=24,
            )
        )
    Entry.objects.bulk_create(rows, batch_size=2000)


def test_the_lookup_uses_the_coverage_index(db):
    _bulk_entries(20000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as a real list would have
    plan = entries_covering(parse_ip("5.0.10.9")).explain()
    assert "entry_coverage_idx" in plan, plan
    if connection.vendor == "postgresql":
        assert "Seq Scan" not in plan, plan
    assert covering("5.0.10.9") == ["5.0.10.0/24"]
