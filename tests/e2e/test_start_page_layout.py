"""The answer first, in a real browser: after a check, the verdict is the first thing on a 320 px
phone screen, with the way ahead and a link that jumps to the request form, in both languages.

Screenshots at 320 px and 1280 px land in test-artifacts/screenshots/start-*.png.
Needs Debian's Chromium (`bash .ci/browser-tools.sh`).
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page

from tests.conftest import IN_RANGE_IP, UNLISTED_IP
from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e

# The smallest phone still sold (an iPhone SE's 320 x 568 CSS px), and a desktop.
PHONE = {"width": 320, "height": 568}
DESKTOP = {"width": 1280, "height": 900}
REJECTION = (
    "550 5.7.606 Access denied, banned sending IP [5.61.14.7]; To request removal from this list "
    "please visit https://delist.example.org/?ip=5.61.14.7 and follow the directions."
)
LANGUAGES = {"en": "en-GB", "sv": "sv-SE"}


def bottom(page: Page, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box, f"{selector} is not shown"
    return box["y"] + box["height"]


def on_first_screen(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (
        f"{selector} is at {box} on a {PHONE['width']}x{PHONE['height']} screen"
    )


def no_sideways_scroll(page: Page) -> None:
    root = "document.documentElement"
    assert page.evaluate(f"{root}.scrollWidth - {root}.clientWidth") <= 0


@pytest.fixture
def phone(chromium, request):
    contexts = []

    def open_page(language: str) -> Page:
        context = chromium.new_context(locale=LANGUAGES[language], viewport=PHONE)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def screenshots(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, size in (("320", PHONE), ("1280", DESKTOP)):
        page.set_viewport_size(size)
        no_sideways_scroll(page)
        page.screenshot(path=SCREENSHOTS / f"start-{name}-{width}.png", full_page=True)
    page.set_viewport_size(PHONE)
    # What a phone shows before any scrolling.
    page.screenshot(path=SCREENSHOTS / f"start-{name}-320-first-screen.png")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_listed_ip_pasted_from_the_bounce_gets_its_verdict_first_and_a_link_to_the_form(
    phone, live_server, listed, settings, language
):
    settings.DELIST_PROPAGATION_DELAY = 3600
    page = phone(language)
    page.goto(f"{live_server.url}/?{urlencode({'ip': REJECTION})}")
    screenshots(page, f"listed-paste-{language}")

    # First in reading order: main opens with the verdict, and the page's one heading is it.
    assert page.evaluate("document.querySelector('main').firstElementChild.id") == "verdict"
    assert page.locator("h1").count() == 1
    assert page.locator("#verdict h1").inner_text().startswith("5.61.14.7 ")
    # First on screen: the verdict, which address we took, who delists it and the link to the form.
    for selector in ("#verdict h1", "#verdict .pasted", "#verdict .path", "#verdict .jump a"):
        on_first_screen(page, selector)
    # Nothing but the site's header above the verdict.
    assert page.locator("#verdict").bounding_box()["y"] - bottom(page, "header.site") < 40
    no_sideways_scroll(page)

    page.locator("#verdict .jump a").click()
    page.wait_for_function("location.hash === '#delist-heading'")
    heading = page.locator("#delist-heading").bounding_box()
    assert 0 <= heading["y"] < 100, f"the request form's heading is at {heading} after the jump"
    # The request form holds the address the check took, ready to send.
    assert page.input_value("#id_ip") == "5.61.14.7"


@pytest.mark.parametrize(("ip", "name"), [(IN_RANGE_IP, "range"), (UNLISTED_IP, "unlisted")])
def test_a_range_and_an_unlisted_ip_also_get_their_verdict_first(phone, live_server, listed, ip, name):
    page = phone("en")
    page.goto(f"{live_server.url}/?{urlencode({'ip': ip})}")
    screenshots(page, name)
    assert page.evaluate("document.querySelector('main').firstElementChild.id") == "verdict"
    on_first_screen(page, "#verdict h1")
    on_first_screen(page, "#verdict p >> nth=0")
    if name == "range":
        on_first_screen(page, "#verdict .path")
        on_first_screen(page, "#verdict .jump a")
    else:
        assert page.locator("#verdict .jump").count() == 0  # nothing to delist


def test_an_unlisted_ip_in_the_request_form_is_told_beside_the_field_and_at_the_top(
    phone, live_server, listed
):
    page = phone("en")
    page.goto(f"{live_server.url}/")
    page.fill("#id_email", "postmaster@mail.example.com")
    page.fill("#id_ip", UNLISTED_IP)
    page.click("form[action='/request'] button[type=submit]")
    page.wait_for_selector(".error-summary")
    screenshots(page, "unlisted-request")
    on_first_screen(page, ".error-summary")
    assert "is not on our blocklist" in page.locator(".error-summary").inner_text()
    assert "is not on our blocklist" in page.locator("#id_ip_error").inner_text()
    page.click(".error-summary a[href='#id_ip']")
    assert page.evaluate("document.activeElement.id") == "id_ip"
