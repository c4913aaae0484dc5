"""The dashboard a desk opens each morning: counts, queue age, per-day requests, delays."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from requests_app.dashboard import duration, figures
from requests_app.models import DelistRequest, State

DASHBOARD = reverse("admin:requests_app_dashboard")


def make_requests(now):
    for ip, state, confirmed_ago, done_after in [
        ("81.2.69.1", State.COMPLETED, timedelta(hours=3), timedelta(minutes=70)),
        ("81.2.69.2", State.COMPLETED, timedelta(hours=2), timedelta(minutes=10)),
        ("81.2.69.3", State.NEEDS_REVIEW, timedelta(hours=5), None),
        ("81.2.69.4", State.NEEDS_REVIEW, timedelta(hours=1), None),
        ("81.2.69.5", State.PENDING, None, None),
    ]:
        confirmed_at = now - confirmed_ago if confirmed_ago else None
        DelistRequest.objects.create(
            email="a@mail.example.com",
            ip=ip,
            state=state,
            created_at=(confirmed_at or now) - timedelta(minutes=5),
            confirmed_at=confirmed_at,
            completed_at=confirmed_at + done_after if done_after else None,
        )


def test_the_figures_add_up(db):
    now = timezone.now()
    make_requests(now)
    data = figures()
    counts = dict(data["counts"])
    assert counts["delisted"] == 2 and counts["in review"] == 2 and counts["waiting for confirmation"] == 1
    assert data["queue"]["count"] == 2 and data["queue"]["oldest"].startswith("5 h")
    assert sum(n for _day, n in data["per_day"]) == 5 and len(data["per_day"]) == 30
    assert [bar["value"] for bar in data["delay_bars"]] == [1, 0, 1, 0, 0, 0]
    assert data["delay_median"] == "40 min"


def test_the_dashboard_draws_svg_charts_with_the_numbers_beside_them(admin_client, db):
    make_requests(timezone.now())
    html = admin_client.get(DASHBOARD).content.decode()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 2 and "<rect" in html
    assert "2 requests waiting" in html
    assert "15–60 min" in html and "Median 40 min over 2 delistings" in html
    assert "<script" not in html.split('id="content-main"')[1].split("</section>\n</div>")[0]


def test_durations_read_like_a_desk_says_them():
    assert duration(timedelta(minutes=12)) == "12 min"
    assert duration(timedelta(hours=2, minutes=5)) == "2 h 5 min"
    assert duration(timedelta(days=3, hours=4, minutes=59)) == "3 d 4 h"
