"""The Content-Security-Policy in a real browser: the sender's pages and the Django admin work
under it with not a single violation, and the policy really is enforced (a style attribute
slipped into a page is refused and reported).

Needs Debian's Chromium: `bash .ci/browser-tools.sh` installs it.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, Response

from requests_app.models import DelistRequest, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Runs before any page script, in every document: collects what the browser refused.
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
    + (e.sample ? ` (${e.sample})` : "")
  );
});
"""


class Watch:
    """A browser tab that notes every policy violation, header complaint and script error."""

    def __init__(self, browser: Browser):
        self.context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
        self.context.add_init_script(COLLECT_VIOLATIONS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on(
            "pageerror", lambda error: self.problems.append(f"{self.page.url}: script error {error}")
        )

    def _console(self, message) -> None:
        # Chromium reports refused content, and policy headers it cannot read, on the console.
        if re.search(r"Content.Security.Policy|Permissions.Policy|Refused to", message.text, re.IGNORECASE):
            self.problems.append(f"{self.page.url}: console {message.type}: {message.text}")

    def visited(self, response: Response | None) -> None:
        """After a page loaded: its own header is the policy, and it saw no violation."""
        # A form with errors answers 400: the page shown still counts.
        assert response is not None and response.status < 500, (
            f"{self.page.url}: {response and response.status}"
        )
        policy = response.header_value("content-security-policy") or ""
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, f"{self.page.url}: {policy!r}"
        self.page.wait_for_load_state("load")
        self.collect()

    def collect(self) -> list[str]:
        """Moves the violations this document saw so far into problems (a new page starts afresh)."""
        seen = self.page.evaluate("window.__cspViolations.splice(0)")
        self.problems += [f"{self.page.url}: {v}" for v in seen]
        return self.problems

    def goto(self, url: str) -> Page:
        self.collect()
        self.visited(self.page.goto(url))
        return self.page

    def submit(self, selector: str) -> Page:
        """Presses a form's button and checks the page it leads to."""
        self.collect()
        with self.page.expect_navigation() as navigation:
            self.page.click(selector)
        self.visited(navigation.value)
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watch(chromium):
    tab = Watch(chromium)
    yield tab
    tab.close()


def test_the_senders_pages_run_with_no_policy_violation(watch, live_server, listed, mailoutbox, settings):
    settings.DELIST_PROPAGATION_DELAY = 1500
    watch.goto(f"{live_server.url}/")
    page = watch.goto(f"{live_server.url}/?ip={LISTED_IP}")
    assert page.locator(".lookup").is_visible()

    page.fill("#id_email", "not-an-address")
    watch.submit("form[action='/request'] button[type=submit]")
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")  # portal.js ran

    page.fill("#id_email", SENDER)
    page.fill("#id_ip", LISTED_IP)
    watch.submit("form[action='/request'] button[type=submit]")
    assert re.search(r"/status/", page.url)
    link = re.search(r"^(https?://\S+/confirm/\S+)$", mailoutbox[-1].body, re.MULTILINE).group(1)

    watch.goto(link.replace(settings.PORTAL_BASE_URL, live_server.url))
    assert page.get_by_role("button", name="Delist IP").is_visible()
    watch.submit("form[action^='/confirm/'] button[type=submit]")
    assert page.locator("#request-status").get_attribute("data-state") == "approved"

    page.click("button[name=language][value=sv]")  # the language switch posts and redirects
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "sv"
    watch.visited(page.reload())
    assert watch.collect() == []


def _desk(listing) -> tuple[int, int]:
    """An entry and a request waiting for review; their ids."""
    listing(LISTED_IP, reason="spam trap hits")
    entry = listing("37.120.8.0/24", reason="snowshoe spam")
    now = timezone.now()
    waiting = DelistRequest.objects.create(
        email=SENDER,
        ip=IN_RANGE_IP,
        state=State.NEEDS_REVIEW,
        created_at=now - timedelta(hours=3),
        confirmed_at=now - timedelta(hours=2),
    )
    waiting.entries.set([entry])
    return entry.pk, waiting.pk


def test_the_django_admin_runs_with_no_policy_violation(watch, live_server, listing):
    entry_id, request_id = _desk(listing)
    User.objects.create_superuser("desk", "desk@example.org", "a-long-password-1")

    page = watch.goto(f"{live_server.url}{reverse('admin:login')}")
    page.fill("#id_username", "desk")
    page.fill("#id_password", "a-long-password-1")
    watch.submit("input[type=submit]")
    assert page.url == f"{live_server.url}{reverse('admin:index')}"
    assert page.get_by_role("link", name="Dashboard").is_visible()

    # The change list's actions bar counts the selection in JavaScript.
    page = watch.goto(f"{live_server.url}{reverse('admin:blocklist_entry_changelist')}")
    page.check("#action-toggle")
    assert page.locator(".action-counter").inner_text().startswith("2 of 2")

    watch.goto(f"{live_server.url}{reverse('admin:blocklist_entry_change', args=[entry_id])}")
    # The date and time pickers draw their pop-ups from JavaScript.
    page = watch.goto(f"{live_server.url}{reverse('admin:blocklist_entry_add')}")
    if page.locator("#calendarlink0").count():
        page.click("#calendarlink0")
        assert page.locator("#calendarbox0").is_visible()
        page.click("#clocklink0")
        assert page.locator("#clockbox0").is_visible()

    watch.goto(f"{live_server.url}{reverse('admin:blocklist_entry_import')}")
    watch.goto(f"{live_server.url}{reverse('admin:requests_app_delistrequest_changelist')}")
    watch.goto(f"{live_server.url}{reverse('admin:requests_app_delistrequest_change', args=[request_id])}")
    page = watch.goto(f"{live_server.url}{reverse('admin:requests_app_reviewqueue_changelist')}")
    assert page.locator("#result_list tbody tr").count() == 1
    page = watch.goto(f"{live_server.url}{reverse('admin:requests_app_dashboard')}")
    assert page.locator("svg[role=img]").count() == 2
    # The charts keep their drawn width from the stylesheet, not from a style attribute.
    assert page.locator("svg.chart").first.evaluate("e => getComputedStyle(e).maxWidth") == "100%"
    assert watch.collect() == []


def test_the_policy_is_enforced_and_a_violation_would_be_seen(watch, live_server, db):
    page = watch.goto(f"{live_server.url}/")
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<p id=canary style=\"color: rgb(255, 0, 0)\">x</p>')"
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.locator("#canary").evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    assert any("style-src-attr blocked inline" in problem for problem in watch.collect())
