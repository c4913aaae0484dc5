"""The cache's counter step for rate limits: one round trip, and the cache API's contract kept."""

from __future__ import annotations

import pytest
import redis
from django.core.cache import caches
from django.test import RequestFactory, override_settings

from portal_lib.rates import client_limited
from portal_lib.redis_cache import RateCounterCache, RedisCache
from tests.faults.conftest import OwnRedis


@pytest.fixture
def own_redis(tmp_path):
    instance = OwnRedis(tmp_path)
    instance.start()
    yield instance
    instance.stop()


SENT: list[str] = []


class CountingConnection(redis.Connection):
    """Records each command this side sends: one per round trip."""

    def send_command(self, *args, **kwargs):
        SENT.append(str(args[0]).upper())
        return super().send_command(*args, **kwargs)


class CountingPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url, **kwargs):
        return super().from_url(url, connection_class=CountingConnection, **kwargs)


def test_incr_is_one_round_trip_and_raises_for_a_missing_key(own_redis):
    cache = RedisCache(own_redis.url, {"OPTIONS": {"pool_class": CountingPool}})
    server = own_redis.client()
    assert cache.add("counter", 1, 60)
    # The first call loads the script on the server (NOSCRIPT, SCRIPT LOAD): once per process.
    assert cache.incr("counter") == 2
    SENT.clear()
    assert cache.incr("counter") == 3
    assert cache.incr("counter", 5) == 8
    with pytest.raises(ValueError):
        cache.incr("missing")
    assert SENT == ["EVALSHA"] * 3  # Django's own client: EXISTS, then INCRBY, each time
    # The counter keeps its expiry, and a missing key is not created by asking.
    assert 0 < server.ttl(cache.make_key("counter")) <= 60
    assert not server.exists(cache.make_key("missing"))


def test_the_script_survives_a_server_that_forgot_it(own_redis):
    cache = RedisCache(own_redis.url, {})
    cache.add("counter", 1, 60)
    assert cache.incr("counter") == 2
    own_redis.client().script_flush()
    assert cache.incr("counter") == 3


def test_the_rate_counter_counts_an_existing_counter_in_its_add_and_hands_it_to_the_incr(own_redis):
    cache = RateCounterCache(own_redis.url, {"OPTIONS": {"pool_class": CountingPool}})
    server = own_redis.client()

    def count_one() -> int:
        # What django-ratelimit does for each counted request.
        return 1 if cache.add("counter", 1, 60) else cache.incr("counter")

    assert count_one() == 1
    assert count_one() == 2  # loads the script on the server, once per process
    SENT.clear()
    assert [count_one() for _ in range(3)] == [3, 4, 5]
    assert SENT == ["EVALSHA"] * 3  # one round trip each; django-ratelimit's way on Django's: 3
    assert 0 < server.ttl(cache.make_key("counter")) <= 60
    # A later incr of its own is a real one, and only the add just before it is handed over.
    assert cache.incr("counter") == 6
    assert cache.add("counter", 1, 60) is False and cache.incr("counter", 2) == 9
    # A count not taken by the incr right after its add is not handed to a later one.
    assert cache.add("counter", 1, 60) is False and cache.add("other", 1, 60)
    assert cache.incr("counter") == 11
    assert cache.get("counter") == 11


def test_the_rate_counter_adds_as_django_does_for_anything_but_a_count(own_redis):
    cache = RateCounterCache(own_redis.url, {})
    assert cache.add("looked", 0, 60) and not cache.add("looked", 0, 60)
    assert cache.get("looked") == 0  # django-ratelimit's look without counting counts nothing
    assert cache.add("thing", {"a": 1}, 60) and not cache.add("thing", {"b": 2}, 60)
    assert cache.get("thing") == {"a": 1}
    assert cache.add("kept", 1, None) and own_redis.client().ttl(cache.make_key("kept")) == -1


@pytest.mark.parametrize(
    "backend", ["portal_lib.redis_cache.RedisCache", "portal_lib.redis_cache.RateCounterCache"]
)
def test_a_client_limit_counts_through_it(one_instant, own_redis, backend):
    caches_ = {"default": {"BACKEND": backend, "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches_, RATELIMIT_USE_CACHE="default"):
        caches["default"].clear()
        request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7")
        answers = [client_limited(request, group="test", rate="3/m") for _ in range(4)]
        caches["default"].close()
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and 1 <= answers[3].retry_after <= 60


def test_the_portal_counts_its_rate_limits_in_the_rate_counter_cache(settings):
    if not settings.CACHE_SHARED:
        pytest.skip("on the embedded default the rate limits count in the process's own cache")
    assert isinstance(caches[settings.RATELIMIT_USE_CACHE], RateCounterCache)
    assert not isinstance(caches["default"], RateCounterCache)  # its add is Django's
