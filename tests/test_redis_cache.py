"""The cache's counter step for rate limits: one round trip, and the cache API's contract kept."""

from __future__ import annotations

import pytest
import redis
from django.core.cache import caches
from django.test import RequestFactory, override_settings

from portal_lib.rates import client_limited
from portal_lib.redis_cache import RedisCache
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


def test_a_client_limit_counts_through_it(one_instant, own_redis):
    backend = {"default": {"BACKEND": "portal_lib.redis_cache.RedisCache", "LOCATION": own_redis.url}}
    with override_settings(CACHES=backend):
        caches["default"].clear()
        request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7")
        answers = [client_limited(request, group="test", rate="3/m") for _ in range(4)]
        caches["default"].close()
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and 1 <= answers[3].retry_after <= 60
