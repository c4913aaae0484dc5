import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import quote_etag
from django.views.decorators.http import require_safe

from blocklist.api_keys import bearer_token, caller_for, count_use, too_many
from blocklist.exports import CONTENT_TYPES, FILE_NAMES, export_chunks
from blocklist.formats import delist_url, entry_json
from blocklist.ip import parse_ip
from blocklist.models import Entry, ListVersion
from blocklist.services import lookup
from portal_lib.rates import client_limited, key_limited


def _too_many(request: HttpRequest) -> JsonResponse | None:
    """429 with Retry-After once this client is past DELIST_API_RATE."""
    limited = client_limited(request, group="api", rate=settings.DELIST_API_RATE)
    if limited is None:
        return None
    response = JsonResponse(
        {
            "error": f"too many requests; try again in {limited.retry_after} s",
            "retry_after": limited.retry_after,
        },
        status=429,
    )
    response["Retry-After"] = str(limited.retry_after)
    return response


# Mail servers and proxies may reuse an answer this long; a delisting shows within a minute.
API_MAX_AGE = 60


@require_safe
def api_ip(request: HttpRequest, ip: str) -> HttpResponse:
    """The listing status of one IP: one database query, one cache round trip (the rate limit)."""
    if refused := _too_many(request):
        return refused
    try:
        address = parse_ip(ip)
    except ValidationError as e:
        return JsonResponse({"error": " ".join(e.messages)}, status=400)
    entries = lookup(address)
    response = JsonResponse(
        {
            "ip": str(address),
            "listed": bool(entries),
            "entries": [entry_json(e) for e in entries],
            "delist_url": delist_url(str(address)),
        }
    )
    return _cacheable(request, response)


def _cacheable(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Cache-Control and an ETag of the body; 304 when the client holds that body already.

    Hashing the body, not a version of the list, keeps the ETag exact without another query:
    it changes when an entry expires too, which no counter of changes sees.
    """
    etag = quote_etag(hashlib.blake2b(response.content, digest_size=16).hexdigest())
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=API_MAX_AGE)
    return get_conditional_response(request, etag=etag, response=response)


def _export_etag(fmt: str) -> str:
    """The export's ETag, from the list's version: one query, never a read of the list.

    Within one version the active set changes only as entries pass their expiry (until the
    sweep closes them, which bumps the version), so the version and the count of lapsed
    entries not yet closed name the content exactly; the portal's URL is in it too.
    """
    entry, version = (connection.ops.quote_name(m._meta.db_table) for m in (Entry, ListVersion))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT version FROM {version} WHERE id = 1), (SELECT count(*) FROM {entry} "
            "WHERE delisted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= %s)",
            [timezone.now()],
        )
        listed_version, lapsed = cursor.fetchone()
    portal = hashlib.blake2b(settings.PORTAL_BASE_URL.encode(), digest_size=4).hexdigest()
    return quote_etag(f"{fmt}-{listed_version or 0}-{lapsed}-{portal}")


@require_safe
def api_export(request, fmt: str):
    """The export in one format, streamed, for mail servers holding EXPORT_TOKEN or an API key."""
    if refused := _too_many(request):
        return refused
    token = bearer_token(request)
    caller = caller_for(token) if token is not None else None
    if caller is None and not settings.EXPORT_TOKEN:
        # No export token and no key: look exactly like a URL that does not exist.
        return JsonResponse({"error": "not found"}, status=404)
    if token is None:
        response = JsonResponse(
            {"error": "authentication required: Authorization: Bearer <token>"}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="export"'
        return response
    if caller is None:
        return JsonResponse({"error": "invalid token"}, status=403)
    if limited := key_limited(request, group="api-key", rate=settings.DELIST_API_KEY_RATE, key=caller.name):
        return too_many(limited)
    if caller.key is not None:
        count_use(caller.key)
    if fmt not in FILE_NAMES:
        return JsonResponse({"error": f"unknown format; choose from {', '.join(FILE_NAMES)}"}, status=404)
    etag = _export_etag(fmt)
    if unchanged := get_conditional_response(request, etag=etag):
        unchanged["Cache-Control"] = "no-store"
        unchanged["ETag"] = etag
        return unchanged
    if request.method == "HEAD":
        # Nothing to stream, so do not read the whole list from the database.
        response = HttpResponse(content_type=CONTENT_TYPES[fmt])
    else:
        response = StreamingHttpResponse(export_chunks(fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{FILE_NAMES[fmt]}"'
    response["Cache-Control"] = "no-store"
    response["ETag"] = etag
    return response
