from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.views.decorators.http import require_safe
from django_ratelimit.decorators import ratelimit

from blocklist.formats import delist_url, entry_json
from blocklist.ip import parse_ip
from blocklist.services import entries_covering
from delist_portal.client_ip import ratelimit_key


def _api_rate(group, request) -> str:
    return settings.DELIST_API_RATE


@require_safe
@ratelimit(key=ratelimit_key, rate=_api_rate, block=False)
def api_ip(request, ip: str):
    if getattr(request, "limited", False):
        return JsonResponse({"error": "too many requests; slow down"}, status=429)
    try:
        address = parse_ip(ip)
    except ValidationError as e:
        return JsonResponse({"error": " ".join(e.messages)}, status=400)
    entries = list(entries_covering(address))
    return JsonResponse(
        {
            "ip": str(address),
            "listed": bool(entries),
            "entries": [entry_json(e) for e in entries],
            "delist_url": delist_url(str(address)),
        }
    )
