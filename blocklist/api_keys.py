"""API keys: creating and revoking them, and authenticating, limiting and counting each call.

A key is shown once, when it is made; the database keeps its SHA-256. A call is authenticated
by looking that hash up (one indexed query), so no stored secret is ever compared in Python.
EXPORT_TOKEN, when set, is a read key named `export-token` that lives in the settings.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError
from django.db.models import F, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from blocklist import audit
from blocklist.models import ApiKey
from portal_lib.rates import Limited, client_limited, key_limited

logger = logging.getLogger(__name__)

Scope = ApiKey.Scope
KEY_PREFIX = "dlk_"
# What the admin and `api_key list` show of a key: enough to tell keys apart, useless to an attacker.
SHOWN_CHARS = 12
EXPORT_TOKEN_NAME = "export-token"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Names the audit trail already uses for actors that are not people.
RESERVED_NAMES = {audit.SENDER, audit.WORKER, audit.IMPORT, audit.SELF_SERVICE, "expiry", EXPORT_TOKEN_NAME}
# last_used_at and the request count are written at most this often per key.
USAGE_FLUSH_SECONDS = 60


class ApiKeyError(ValueError):
    """A key cannot be made or revoked as asked; the message says why."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def api_key_create(*, name: str, scope: str) -> tuple[ApiKey, str]:
    """A new key; returns it with the secret, which is never stored and cannot be shown again."""
    if not NAME_RE.match(name):
        raise ApiKeyError(
            f"{name!r} is not a key name: use 1 to 64 lower-case letters, digits, '.', '_' or '-'"
        )
    if name in RESERVED_NAMES:
        raise ApiKeyError(f"{name!r} is reserved: the audit trail uses it for something else")
    if scope not in Scope.values:
        raise ApiKeyError(f"scope must be one of {', '.join(Scope.values)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    try:
        api_key = ApiKey.objects.create(
            name=name, scope=scope, prefix=key[:SHOWN_CHARS], key_hash=key_hash(key)
        )
    except IntegrityError:
        raise ApiKeyError(f"a key named {name!r} exists already (names are never reused)") from None
    logger.info("API key %s created (%s)", name, scope)
    return api_key, key


def api_key_revoke(*, name: str, now: datetime | None = None) -> bool:
    """Revoke the key; False when it was revoked already. Its next call gets 401."""
    if not ApiKey.objects.filter(name=name).exists():
        raise ApiKeyError(f"there is no key named {name!r}")
    revoked = ApiKey.objects.filter(name=name, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )
    if revoked:
        logger.info("API key %s revoked", name)
    return bool(revoked)


@dataclass(frozen=True)
class Caller:
    """Who is calling: an API key, or the settings' EXPORT_TOKEN (key None)."""

    name: str
    scope: str
    key: ApiKey | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == Scope.WRITE


def bearer_token(request: HttpRequest) -> str | None:
    scheme, _space, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def caller_for(token: str) -> Caller | None:
    """The live key (or EXPORT_TOKEN) the token is; None for anything else."""
    # Constant-time, on bytes so a non-ASCII token cannot raise.
    export_token = settings.EXPORT_TOKEN
    if export_token and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), export_token.encode()):
        return Caller(name=EXPORT_TOKEN_NAME, scope=Scope.READ)
    if not token.startswith(KEY_PREFIX) or len(token) > 128:
        return None  # not a key: no query
    found = ApiKey.objects.filter(key_hash=key_hash(token), revoked_at__isnull=True).first()
    return Caller(name=found.name, scope=found.scope, key=found) if found is not None else None


def error(message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def too_many(limited: Limited) -> JsonResponse:
    response = error(
        f"too many requests; try again in {limited.retry_after} s", 429, retry_after=limited.retry_after
    )
    response["Retry-After"] = str(limited.retry_after)
    return response


def unauthorized(message: str) -> JsonResponse:
    response = error(message, 401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def authenticate(request: HttpRequest) -> Caller | JsonResponse:
    """The caller, counted and within its rate; otherwise the 401 or 429 to answer.

    A call without a valid key counts against its client address (DELIST_API_RATE), so
    guessing costs a prober its own budget; a valid key counts against DELIST_API_KEY_RATE.
    """
    token = bearer_token(request)
    caller = caller_for(token) if token is not None else None
    if caller is None:
        if limited := client_limited(request, group="api", rate=settings.DELIST_API_RATE):
            return too_many(limited)
        if token is None:
            return unauthorized("authentication required: Authorization: Bearer <key>")
        return unauthorized("unknown or revoked key")
    if limited := key_limited(request, group="api-key", rate=settings.DELIST_API_KEY_RATE, key=caller.name):
        return too_many(limited)
    if caller.key is not None:
        count_use(caller.key)
    return caller


def key_required(scope: str):
    """A view for machines: bearer-authenticated (so no CSRF: no cookie is involved), with
    the caller in request.caller; a read key on a write endpoint is 403."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            caller = authenticate(request)
            if isinstance(caller, JsonResponse):
                return caller
            if scope == Scope.WRITE and not caller.can_write:
                return error("this key may only read", 403)
            request.caller = caller
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _pending_counter(key_id: int) -> str:
    return f"blocklist:api-key-uses:{key_id}"


def count_use(key: ApiKey, *, now: datetime | None = None) -> None:
    """Count a call without a write per call: calls add up in the cache, and the row gets them
    (with last_used_at) at most once a minute, by a conditional UPDATE only one process wins."""
    now = now or timezone.now()
    counter = _pending_counter(key.pk)
    try:
        cache.add(counter, 0, timeout=None)
        pending = cache.incr(counter)
    except Exception as e:  # noqa: BLE001  (cache away: the minute's write still counts this call)
        logger.warning("API key use not counted in the cache (%s)", e)
        pending = None
    stale_before = now - timedelta(seconds=USAGE_FLUSH_SECONDS)
    if key.last_used_at is not None and key.last_used_at > stale_before:
        return
    flushed = pending if pending is not None else 1
    won = (
        ApiKey.objects.filter(pk=key.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before))
        .update(last_used_at=now, request_count=F("request_count") + flushed)
    )
    if won and pending is not None:
        try:
            cache.decr(counter, flushed)  # calls counted meanwhile stay pending
        except Exception as e:  # noqa: BLE001
            logger.warning("API key use counter not reset (%s)", e)


def requests_made(keys: list[ApiKey]) -> dict[int, int]:
    """Each key's calls: those written to its row plus those still pending in the cache."""
    try:
        pending = cache.get_many([_pending_counter(k.pk) for k in keys])
    except Exception:  # noqa: BLE001  (cache away: what the rows say)
        pending = {}
    return {k.pk: k.request_count + int(pending.get(_pending_counter(k.pk)) or 0) for k in keys}
