"""Django's Redis cache, with the counter step of a rate limit in one round trip.

django-ratelimit counts with `add` and then `incr`. Django's client runs `incr` as EXISTS then
INCRBY (so that a missing key raises, as the cache API says), each through a new redis-py client:
three round trips per limited request. Here `incr` is one script that does both steps on the
server, and each connection pool keeps one client (redis-py clients are thread-safe). The cache
that holds the rate limits' counters (RateCounterCache) goes further: one round trip a request.
"""

from __future__ import annotations

import threading

from django.core.cache.backends import redis as django_redis

# INCRBY only if the key exists: the cache API's incr raises for a missing key, and INCRBY
# alone would create it without an expiry (a counter that never resets).
_INCR_EXISTING = """
if redis.call('exists', KEYS[1]) == 1 then
    return redis.call('incrby', KEYS[1], ARGV[1])
end
return false
"""


class OneTripRedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._scripts = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def incr(self, key, delta):
        client = self.get_client(key, write=True)
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(_INCR_EXISTING)
        value = script(keys=[key], args=[delta])  # EVALSHA; EVAL once if the server lost it
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = OneTripRedisCacheClient


# SET NX with an expiry; if the counter was there already, count the value given instead.
_ADD_OR_COUNT = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return false
end
return redis.call('incrby', KEYS[1], ARGV[1])
"""


class RateCounterCacheClient(OneTripRedisCacheClient):
    """For the cache that holds only django-ratelimit's counters (RATELIMIT_USE_CACHE).

    django-ratelimit counts one with `add(key, 1, ...)` and, when the key was there, `incr(key)`:
    two round trips for every request after a window's first. Here an `add` of a positive count
    to an existing counter counts it in the same script, and keeps the new count for the `incr`
    that follows, which is then answered without a round trip. An `add` of 0 (django-ratelimit
    only looking) and any other value behave as Django's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._counted = threading.local()

    def add(self, key, value, timeout):
        self._counted.last = None  # a count is only ever handed to the incr right after its add
        if type(value) is not int or value < 1 or not timeout:
            return super().add(key, value, timeout)
        client = self.get_client(key, write=True)
        script = self._scripts.get(("add", id(client)))
        if script is None:
            script = self._scripts["add", id(client)] = client.register_script(_ADD_OR_COUNT)
        count = script(keys=[key], args=[value, int(timeout)])
        if count is None:
            return True
        self._counted.last = (key, value, count)
        return False

    def incr(self, key, delta):
        counted = getattr(self._counted, "last", None)
        self._counted.last = None
        if counted is not None and counted[:2] == (key, delta):
            return counted[2]  # counted by the add just before
        return super().incr(key, delta)


class RateCounterCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RateCounterCacheClient
