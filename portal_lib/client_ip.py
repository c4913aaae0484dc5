"""Who is asking: the address rate limits and records use."""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with N trusted proxies the Nth X-Forwarded-For value from the right.

    Values further left were written by the client and can say anything.
    """
    count = settings.TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR", "")
    if count <= 0:
        return remote
    forwarded = [v.strip() for v in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if v.strip()]
    if len(forwarded) < count:
        return remote
    return forwarded[-count]


def ratelimit_key(group: str, request: HttpRequest) -> str:
    return client_ip(request)
