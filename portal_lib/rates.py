"""Rates in django-ratelimit's `N/period` form, and per-client limits that say when to come back."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.http import HttpRequest
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# "10/h", "120/m", "500/2h": a count, then an optional multiplier and a unit.
RATE_RE = re.compile(r"^(?P<count>[0-9]{1,7})/(?P<multiplier>[0-9]{0,5})(?P<unit>[smhd])$")


def parse_rate(rate: str) -> tuple[int, int]:
    """(count, seconds) of a rate such as '10/h'; ValueError for anything else."""
    match = RATE_RE.match(rate.strip())
    if not match or int(match["count"]) < 1 or match["multiplier"] and int(match["multiplier"]) < 1:
        raise ValueError(f"{rate!r} is not a rate like 10/h, 120/m or 500/2h")
    multiplier = int(match["multiplier"] or 1)
    return int(match["count"]), multiplier * _PERIODS[match["unit"]]


@dataclass(frozen=True)
class Limited:
    """A limit was reached; `retry_after` seconds until it lets the next one through."""

    retry_after: int


def client_limited(request: HttpRequest, *, group: str, rate: str) -> Limited | None:
    """Count one more for this client (IPv6 per /64, see RATELIMIT_IPV6_MASK) against `rate`.

    The counter lives in the cache. When the cache is away this limit fails open, with a
    warning: what must hold exactly (the mail limits) is counted in the database instead.
    """
    return _limited(request, group=group, key="ip", rate=rate)


def key_limited(request: HttpRequest, *, group: str, rate: str, key: str) -> Limited | None:
    """client_limited, but counted per `key` (an API key's name) instead of per client address."""
    return _limited(request, group=group, key=lambda _group, _request: key, rate=rate)


def _limited(request: HttpRequest, *, group: str, key, rate: str) -> Limited | None:
    try:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    except (RedisError, OSError) as e:
        logger.warning("rate limit %s not counted, the cache is away: %s", group, e)
        return None
    if usage is None or not usage["should_limit"]:
        return None
    return Limited(retry_after=max(1, usage["time_left"]))
