import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.metrics import scrape


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, for a scraper holding METRICS_TOKEN."""
    if not settings.METRICS_TOKEN:
        raise Http404  # metrics are off: exactly like a URL that does not exist
    token = _bearer_token(request)
    # Constant-time, on bytes so a non-ASCII token cannot raise; a missing token is a wrong one.
    if token is None or not hmac.compare_digest(token.encode(), settings.METRICS_TOKEN.encode()):
        response = HttpResponse(
            "authentication required: Authorization: Bearer <METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
