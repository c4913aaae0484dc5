import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import quote_etag
from django.views.decorators.http import require_safe

from blocklist.exports import CONTENT_TYPES, FILE_NAMES, export_chunks
from blocklist.formats import delist_url, entry_json
from blocklist.ip import parse_ip
from blocklist.services import lookup
from portal_lib.rates import client_limited


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


def _bearer_token(request) -> str | None:
    scheme, _space, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@require_safe
def api_export(request, fmt: str):
    """The export in one format, streamed, for mail servers holding EXPORT_TOKEN."""
    if not settings.EXPORT_TOKEN:
        # The export API is off: look exactly like a URL that does not exist.
        return JsonResponse({"error": "not found"}, status=404)
    if refused := _too_many(request):
        return refused
    token = _bearer_token(request)
    if token is None:
        response = JsonResponse(
            {"error": "authentication required: Authorization: Bearer <token>"}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="export"'
        return response
    # Constant-time comparison, on bytes so a non-ASCII token cannot raise.
    if not hmac.compare_digest(token.encode(), settings.EXPORT_TOKEN.encode()):
        return JsonResponse({"error": "invalid token"}, status=403)
    if fmt not in FILE_NAMES:
        return JsonResponse({"error": f"unknown format; choose from {', '.join(FILE_NAMES)}"}, status=404)
    if request.method == "HEAD":
        # Nothing to stream, so do not read the whole list from the database.
        response = HttpResponse(content_type=CONTENT_TYPES[fmt])
    else:
        response = StreamingHttpResponse(export_chunks(fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{FILE_NAMES[fmt]}"'
    response["Cache-Control"] = "no-store"
    return response
