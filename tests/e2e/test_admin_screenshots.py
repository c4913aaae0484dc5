"""The abuse desk in a real browser: an admin logs in, opens the dashboard and the review
queue; the screenshots land in test-artifacts/screenshots/ (not committed)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from blocklist.ip import parse_ip
from blocklist.services import entries_covering
from requests_app import services
from requests_app.models import DelistRequest, State
from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(chromium):
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    yield page
    page.close()


def desk_with_work(listing):
    """Requests in every state the dashboard counts, some waiting for review."""
    now = timezone.now()
    listing("37.120.8.0/24", reason="snowshoe spam")
    for n, (state, days_ago) in enumerate(
        [(State.NEEDS_REVIEW, 2), (State.NEEDS_REVIEW, 0), (State.PENDING, 0)]
    ):
        DelistRequest.objects.create(
            email=f"postmaster{n}@mail.example.com",
            ip=f"37.120.8.{n + 1}",
            state=state,
            created_at=now - timedelta(days=days_ago, hours=1),
            confirmed_at=now - timedelta(days=days_ago) if state != State.PENDING else None,
        )
    for n in range(6):
        ip = f"81.2.69.{n + 10}"
        listing(ip)
        request = DelistRequest.objects.create(
            email="ops@mail.example.com",
            ip=ip,
            state=State.NEEDS_REVIEW,
            created_at=now - timedelta(days=n * 4, hours=2),
            confirmed_at=now - timedelta(days=n * 4, hours=1),
        )
        request.entries.set(entries_covering(parse_ip(ip)))
        services.request_approve(request=request, actor="self-service", now=request.confirmed_at)
        services.delisting_apply(
            request_id=request.pk, now=request.confirmed_at + timedelta(minutes=10 * (n + 1) ** 2)
        )


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_and_review_queue_in_a_browser(page, live_server, listing):
    desk_with_work(listing)
    User.objects.create_superuser("desk", "desk@example.org", "a-long-password-1")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "desk")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.get_by_role("link", name="Review queue").first.is_visible()

    page.goto(f"{live_server.url}/admin/requests_app/delistrequest/dashboard/")
    assert page.locator("svg[role=img]").count() == 2
    assert page.get_by_text("2 requests waiting").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "admin-dashboard.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/requests_app/reviewqueue/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert "37.120.8.1" in rows.first.inner_text()  # oldest first
    page.screenshot(path=str(SCREENSHOTS / "admin-review-queue.png"), full_page=True)
