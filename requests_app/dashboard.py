"""The figures behind the admin dashboard, and the geometry of its server-drawn SVG charts."""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app.models import DelistRequest, State

DAYS = 30
# Buckets for the time from confirmation to delisting: (upper bound, label).
DELAY_BUCKETS = [
    (timedelta(minutes=15), gettext_lazy("< 15 min")),
    (timedelta(hours=1), gettext_lazy("15–60 min")),
    (timedelta(hours=6), gettext_lazy("1–6 h")),
    (timedelta(hours=24), gettext_lazy("6–24 h")),
    (timedelta(days=3), gettext_lazy("1–3 days")),
    (None, gettext_lazy("> 3 days")),
]
CHART_WIDTH, CHART_HEIGHT = 600, 160


def duration(value: timedelta | None) -> str:
    """'3 d 4 h', '2 h 5 min', '12 min': coarse, as a desk reads it."""
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return _("%(days)d d %(hours)d h") % {"days": days, "hours": hours}
    if hours:
        return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": mins}
    return _("%(minutes)d min") % {"minutes": mins}


def bars(values: list[tuple[str, int]]) -> list[dict]:
    """Bar positions for an SVG of CHART_WIDTH x CHART_HEIGHT (labels drawn by the template)."""
    top = max((n for _label, n in values), default=0) or 1
    slot = CHART_WIDTH / max(1, len(values))
    return [
        {
            "label": label,
            "value": n,
            "x": round(i * slot + slot * 0.1, 1),
            "width": round(slot * 0.8, 1),
            "height": round(n / top * (CHART_HEIGHT - 20), 1),
            "y": round(CHART_HEIGHT - n / top * (CHART_HEIGHT - 20), 1),
        }
        for i, (label, n) in enumerate(values)
    ]


def figures() -> dict:
    now = timezone.now()
    by_state = dict(
        DelistRequest.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    counts = [(label, by_state.get(value, 0)) for value, label in State.choices]

    waiting = list(
        DelistRequest.objects.filter(state=State.NEEDS_REVIEW, confirmed_at__isnull=False).values_list(
            "confirmed_at", flat=True
        )
    )
    ages = sorted(now - t for t in waiting)
    queue = {
        "count": len(ages),
        "oldest": duration(ages[-1]) if ages else "",
        "median": duration(statistics.median(ages)) if ages else "",
    }

    since = (now - timedelta(days=DAYS - 1)).date()
    per_day_rows = dict(
        DelistRequest.objects.filter(created_at__date__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    per_day = [
        (since + timedelta(days=i), per_day_rows.get(since + timedelta(days=i), 0)) for i in range(DAYS)
    ]

    delays = [
        done - confirmed
        for confirmed, done in DelistRequest.objects.filter(
            state=State.COMPLETED, confirmed_at__isnull=False, completed_at__gte=now - timedelta(days=90)
        ).values_list("confirmed_at", "completed_at")
    ]
    histogram = []
    lower = timedelta(0)
    for upper, label in DELAY_BUCKETS:
        histogram.append((label, sum(1 for d in delays if d >= lower and (upper is None or d < upper))))
        lower = upper or lower
    return {
        "counts": counts,
        "queue": queue,
        "per_day": per_day,
        "per_day_bars": bars([(day.strftime("%m-%d"), n) for day, n in per_day]),
        "delay_bars": bars(histogram),
        "delay_median": duration(statistics.median(delays)) if delays else "",
        "delay_total": len(delays),
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
    }
