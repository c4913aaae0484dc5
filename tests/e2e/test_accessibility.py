"""The sender's pages in a real browser, in English and Swedish: axe-core finds no serious or
critical problem, nothing needs sideways scrolling on a narrow screen, and the language switch
works without JavaScript. Screenshots of every page land in test-artifacts/screenshots/.

Needs Debian's Chromium and axe-core: `bash .ci/browser-tools.sh` installs both.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page

from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER
from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
# A desktop, and a small phone (320 CSS px is also a 1280 px window at 400% zoom).
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 320, "height": 640}}
LANGUAGES = {"en": "en-GB", "sv": "sv-SE"}


@pytest.fixture(scope="module")
def browser(chromium):
    if not AXE.exists():
        pytest.skip(
            f"{AXE.relative_to(ROOT)} is missing: npm ci --prefix tests/e2e (or .ci/browser-tools.sh)"
        )
    return chromium


def axe_problems(page: Page) -> list[str]:
    """Serious and critical axe-core violations, one readable line each."""
    # Evaluated, not added as a <script>: the Content-Security-Policy refuses inline script.
    page.evaluate(AXE.read_text())
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(str(n['target']) for n in v['nodes'][:5])}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def check(page: Page, language: str, name: str) -> None:
    """axe-core and reflow at both widths, with a screenshot of each."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert page.locator("html").get_attribute("lang") == language
    for width, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        problems = axe_problems(page)
        assert not problems, f"{name} ({language}, {width}):\n" + "\n".join(problems)
        root = "document.documentElement"
        sideways = page.evaluate(f"{root}.scrollWidth - {root}.clientWidth")
        assert sideways <= 0, f"{name} ({language}, {width}) scrolls sideways by {sideways}px"
        page.screenshot(path=SCREENSHOTS / f"{name}-{language}-{width}.png", full_page=True)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_senders_pages_have_no_serious_accessibility_problems(
    browser, live_server, listed, mailoutbox, settings, language
):
    settings.DELIST_PROPAGATION_DELAY = 1500
    context = browser.new_context(locale=LANGUAGES[language])
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/?ip={LISTED_IP}")
        check(page, language, "start-listed")
        page.goto(f"{live_server.url}/?ip={IN_RANGE_IP}")
        check(page, language, "start-range")

        # A form with errors: the summary takes the focus.
        page.fill("#id_email", "not-an-address")
        page.fill("#id_ip", "10.0.0.1")
        page.click("form[action='/request'] button[type=submit]")
        page.wait_for_selector(".error-summary")
        assert page.evaluate("document.activeElement.classList.contains('error-summary')")
        check(page, language, "form-errors")

        page.fill("#id_email", SENDER)
        page.fill("#id_ip", LISTED_IP)
        page.click("form[action='/request'] button[type=submit]")
        page.wait_for_url(re.compile(r"/status/"))
        check(page, language, "status-pending")
        status_url = page.url

        link = re.search(r"^(https?://\S+/confirm/\S+)$", mailoutbox[-1].body, re.MULTILINE).group(1)
        page.goto(link.replace(settings.PORTAL_BASE_URL, live_server.url))
        page.wait_for_url(re.compile(r"/confirm/\?request=\d+$"))
        check(page, language, "confirm")

        page.click("form[action='/confirm/'] button[type=submit]")
        page.wait_for_url(status_url)
        assert page.locator("#request-status").get_attribute("data-state") == "approved"
        check(page, language, "status-approved")
    finally:
        context.close()


def test_the_language_switch_works_without_javascript_and_sticks(browser, live_server, db):
    context = browser.new_context(locale="en-GB", java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/?ip={LISTED_IP}")
        assert page.locator("html").get_attribute("lang") == "en"
        page.click("button[name=language][value=sv]")
        page.wait_for_load_state()
        assert page.url == f"{live_server.url}/?ip={LISTED_IP}"
        assert page.locator("html").get_attribute("lang") == "sv"
        # The verdict is the heading (nothing is listed here).
        assert page.locator("h1").inner_text() == f"{LISTED_IP} finns inte på vår blockeringslista."
        page.goto(f"{live_server.url}{reverse('requests:home')}")
        assert page.locator("html").get_attribute("lang") == "sv"  # remembered in a cookie
    finally:
        context.close()


def test_the_status_page_brings_itself_up_to_date_with_javascript_on(
    browser, live_server, listed, mailoutbox, settings
):
    from requests_app import services

    settings.DELIST_PROPAGATION_DELAY = 2
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/?ip={LISTED_IP}")
        page.fill("#id_email", SENDER)
        page.click("form[action='/request'] button[type=submit]")
        page.wait_for_url(re.compile(r"/status/"))
        link = re.search(r"^(https?://\S+/confirm/\S+)$", mailoutbox[-1].body, re.MULTILINE).group(1)
        page.goto(link.replace(settings.PORTAL_BASE_URL, live_server.url))
        page.click("form[action='/confirm/'] button[type=submit]")
        assert page.locator("#request-status").get_attribute("data-state") == "approved"

        time.sleep(2.5)
        assert services.sweep().delistings_applied == 1  # what the worker does once the delay has passed
        # The page looks again shortly after the removal was due, without reloading.
        page.wait_for_selector("#request-status[data-state=completed]", timeout=15_000)
        assert page.locator("#request-status").get_attribute("data-refresh") is None
        assert page.locator("#status-news").inner_text().startswith("Delisted at")
    finally:
        context.close()
