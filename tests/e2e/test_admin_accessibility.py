"""The desk's own admin pages in a real browser: axe-core finds no serious or critical problem
on any page we add or customise, and the review queue fits a 1280 px screen. Screenshots land
in test-artifacts/screenshots/.

Needs Debian's Chromium and axe-core: `bash .ci/browser-tools.sh` installs both.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page

from blocklist.ip import parse_ip
from blocklist.models import Entry
from blocklist.services import entries_covering
from requests_app.models import DelistRequest, State
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_accessibility import AXE, ROOT, axe_problems
from tests.e2e.test_admin_screenshots import desk_with_work

pytestmark = pytest.mark.e2e


@pytest.fixture
def desk(chromium, live_server, listing):
    """A superuser logged in to an admin with work waiting, in a 1280 px window."""
    if not AXE.exists():
        pytest.skip(
            f"{AXE.relative_to(ROOT)} is missing: npm ci --prefix tests/e2e (or .ci/browser-tools.sh)"
        )
    desk_with_work(listing)
    for request in DelistRequest.objects.filter(state=State.NEEDS_REVIEW):
        request.entries.set(entries_covering(parse_ip(request.ip)))  # what confirming records
    User.objects.create_superuser("desk", "desk@example.org", "a-long-password-1")
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "desk")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    yield page
    context.close()


def check(page: Page, name: str) -> list[str]:
    """axe-core's serious and critical findings on the page, named; a screenshot of it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert page.title() and "Server Error" not in page.title(), name
    page.screenshot(path=SCREENSHOTS / f"admin-{name}-1280.png", full_page=True)
    return [f"{name}: {problem}" for problem in axe_problems(page)]


def sideways(page: Page, selector: str) -> int:
    """How far the element's content overflows it sideways (the admin's list scrolls in its box)."""
    return page.evaluate(f"(e => e.scrollWidth - e.clientWidth)(document.querySelector('{selector}'))")


def run_action(page: Page, action: str) -> None:
    """Selects every request in the list and runs the action, as a reviewer does."""
    page.check("#action-toggle")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_load_state()


@pytest.mark.django_db(transaction=True)
def test_the_desks_pages_have_no_serious_accessibility_problems(desk, live_server):
    admin = f"{live_server.url}/admin"
    entry = Entry.objects.get(network="37.120.8.0/24")
    request = DelistRequest.objects.filter(state=State.NEEDS_REVIEW).order_by("confirmed_at").first()
    pages = {
        "index": f"{admin}/",
        "dashboard": f"{admin}/requests_app/delistrequest/dashboard/",
        "entries": f"{admin}/blocklist/entry/",
        "entry-add": f"{admin}/blocklist/entry/add/",
        "entry": f"{admin}/blocklist/entry/{entry.pk}/change/",
        "request": f"{admin}/requests_app/delistrequest/{request.pk}/change/",
        "import": f"{admin}/blocklist/entry/import/",
    }
    problems = []
    for name, url in pages.items():
        desk.goto(url)
        problems += check(desk, name)

    for action in ("approve", "reject"):
        desk.goto(f"{admin}/requests_app/reviewqueue/")
        run_action(desk, action)
        assert desk.locator(f"input[name=action][value={action}]").count() == 1, action
        problems += check(desk, f"{action}-form")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db(transaction=True)
def test_the_review_queue_fits_a_1280_px_screen_and_shows_what_a_reviewer_needs(desk, live_server):
    desk.goto(f"{live_server.url}/admin/requests_app/reviewqueue/")
    rows = desk.locator("#result_list tbody tr")
    assert rows.count() == 2
    first = rows.first.inner_text()
    assert "37.120.8.0/24 (256 addresses)" in first and "UTC" in first
    assert desk.get_by_text("2 requests in review").is_visible()
    for box in ("html", "#changelist .results"):
        assert sideways(desk, box) <= 0, f"{box} of the review queue scrolls sideways at 1280 px"
    header = desk.locator("#result_list thead").inner_text()
    assert "WHY IN REVIEW" in header.upper() and "COVERING NETWORKS" in header.upper()
    assert not check(desk, "review-queue")
