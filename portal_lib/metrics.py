"""HTTP figures for /metrics: requests by view and status class, and their latency.

Labelled by the URL pattern's name, never the raw path: a scanner trying a million paths
adds nothing but the `unmatched` series. Under gunicorn with several workers each worker
counts in files of its own (prometheus-client's multiprocess mode, set up in gunicorn.conf.py)
and a scrape adds them up, whichever worker answers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "delist_http_requests",
    "HTTP requests answered, by view (URL pattern name) and status class.",
    ["view", "status"],
)
LATENCY = Histogram(
    "delist_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it, by view.",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name or "unnamed"
    if request.path.startswith(f"/{settings.STATIC_URL.lstrip('/')}"):
        return "static"  # whitenoise answers before URL resolution
    return "unmatched"


class HttpMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = view_label(request)
        REQUESTS.labels(view=view, status=f"{response.status_code // 100}xx").inc()
        LATENCY.labels(view=view).observe(time.perf_counter() - started)
        return response
