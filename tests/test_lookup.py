"""One service answers "which active entries cover this IP?", through an index; the API asks it."""

import ipaddress
from datetime import timedelta

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from blocklist.importing import blocklist_import
from blocklist.ip import network_start, parse_ip
from blocklist.models import Entry
from blocklist.services import entries_covering, entries_delist, lookup
from tests.conftest import IN_RANGE_IP, LISTED_IP, UNLISTED_IP, free_port


def covering(ip):
    found = [e.network for e in entries_covering(parse_ip(ip))]
    # The hot path runs the same query compiled once: it must answer the same, in the same order.
    assert [e.network for e in lookup(parse_ip(ip))] == found
    return found


def test_the_lookup_asks_at_the_time_it_is_given(listing):
    now = timezone.now()
    listing(LISTED_IP, expires_at=now + timedelta(hours=1))
    address = parse_ip(LISTED_IP)
    for when, expected in ((now, ["5.61.14.7/32"]), (now + timedelta(hours=2), [])):
        assert [e.network for e in lookup(address, now=when)] == expected
        assert [e.network for e in entries_covering(address, now=when)] == expected


def test_the_lookup_reads_whole_entries(listing):
    made = listing("2a05:d018:1:2::/64", reason="spam trap hits", code="5.7.611")
    (found,) = lookup(parse_ip("2a05:d018:1:2::1"))
    assert (found.pk, found.reason, found.code, found.listed_at) == (
        made.pk,
        made.reason,
        made.code,
        made.listed_at,
    )
    assert found.is_single_address is False


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
    """Ranges written the bulk way (no save()), and as many delisted ones the index must not hold."""
    rows = []
    for i in range(count):
        network = ipaddress.ip_network((0x05000000 + i * 256, 24))
        fields = dict(network=str(network), version=4, network_start=network_start(network), prefix_len=24)
        rows.append(Entry(**fields))
        rows.append(Entry(**fields, delisted_at=timezone.now(), delisted_by="admin"))
    Entry.objects.bulk_create(rows, batch_size=2000)


def test_the_lookup_is_one_index_probe(db):
    _bulk_entries(20000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as a real list would have
    plan = entries_covering(parse_ip("5.0.10.9")).explain()
    if connection.vendor == "postgresql":
        # The partial inet_ops index on live entries, probed once with >>=: no scan of the table.
        assert "entry_cidr_idx" in plan and ">>=" in plan, plan
        assert "Seq Scan" not in plan and "entry_coverage_idx" not in plan, plan
    else:
        assert "entry_coverage_idx" in plan, plan
    assert covering("5.0.10.9") == ["5.0.10.0/24"]


def test_the_cidr_column_follows_the_network_however_an_entry_is_written(listing, on_postgres):
    listing(LISTED_IP)  # save()
    listing("2a05:d018:1::/48")
    _bulk_entries(2)  # bulk_create
    blocklist_import(["37.120.0.0/16", "2a05:d018:9::1"], source="test")  # the import's batches
    for entry in Entry.objects.all():
        assert entry.network_cidr == entry.network
    if on_postgres:
        with connection.cursor() as cursor:  # a row written by hand, as COPY would
            cursor.execute(
                "INSERT INTO blocklist_entry (network, version, network_start, prefix_len, reason, code, "
                "source, listed_at, self_service, delisted_by) VALUES "
                "('81.2.69.0/24', 4, '51024500', 24, '', '5.7.606', '', now(), true, '')"
            )
        assert covering("81.2.69.160") == ["81.2.69.0/24"]


# --- the JSON API -----------------------------------------------------------------------


def api(client, ip, **headers):
    return client.get(reverse("blocklist:api_ip", args=[ip]), **headers)


def test_the_api_says_which_entries_cover_an_ip(client, listed):
    body = api(client, IN_RANGE_IP).json()
    entry = listed["range"]
    assert body == {
        "ip": IN_RANGE_IP,
        "listed": True,
        "entries": [
            {
                "network": "37.120.8.0/24",
                "code": "5.7.606",
                "reason": "snowshoe spam",
                "listed_at": entry.listed_at.isoformat(),
                "expires_at": None,
            }
        ],
        "delist_url": f"https://delist.example.org/?ip={IN_RANGE_IP}",
    }
    assert api(client, UNLISTED_IP).json()["listed"] is False


def test_mail_servers_and_proxies_may_cache_an_answer_for_a_minute(client, listed):
    response = api(client, LISTED_IP)
    assert response["Cache-Control"] == "public, max-age=60"
    assert response["ETag"].startswith('"') and len(response["ETag"]) > 10


def test_an_unchanged_answer_is_a_304_without_a_body(client, listed):
    etag = api(client, LISTED_IP)["ETag"]
    again = api(client, LISTED_IP, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag and again["Cache-Control"] == "public, max-age=60"
    assert api(client, LISTED_IP, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_the_etag_changes_when_the_answer_does(client, listed):
    etag = api(client, LISTED_IP)["ETag"]
    entries_delist([listed["single"].pk], actor="admin")
    response = api(client, LISTED_IP, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and response.json()["listed"] is False
    assert response["ETag"] != etag


def test_the_api_limit_fails_open_when_the_cache_is_away(one_instant, client, listed, settings, caplog):
    settings.DELIST_API_RATE = "1/m"
    away = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    counters = {**away, "BACKEND": "portal_lib.redis_cache.RateCounterCache"}
    settings.CACHES = {"default": away, "ratelimit": counters}
    assert [api(client, LISTED_IP).status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limit api not counted, the cache is away" in caplog.text
