"""The start page answers first: the verdict, who delists the IP and why, when, and where it stands
on the self-service ladder; a pasted bounce comes down to its one address; and the page is valid
HTML as the Nu Html Checker reads it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from blocklist import audit
from requests_app.models import DelistRequest, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER, UNLISTED_IP
from tests.html_checker import html_errors, needs_checker

NOW = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)  # microseconds, as real clocks have
REJECTION = (
    "550 5.7.606 Access denied, banned sending IP [5.61.14.7]; To request removal from this list "
    "please visit https://delist.example.org/?ip=5.61.14.7 and follow the directions."
)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def text(response) -> str:
    """The page as a reader sees it: tags out, whitespace and Django's no-break spaces as spaces."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html).replace("\xa0", " "))


def verdict(response) -> str:
    """What the verdict panel says, the first thing on the page."""
    html = response.content.decode()
    panel = re.search(r'<div class="lookup[^"]*" id="verdict">(.*?)</div>', html, re.S)
    assert panel, "no verdict panel"
    # The first thing in main, before any other tag.
    assert re.search(r'<main id="main"[^>]*>\s*<div class="lookup[^"]*" id="verdict">', html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", panel.group(1)).replace("\xa0", " ")).strip()


def check(client, ip, **headers):
    response = client.get(reverse("requests:home"), {"ip": ip}, headers=headers)
    assert response.status_code == 200
    return response


def delisted_by_self_service(ip: str, *, days_ago: list[float]) -> None:
    """Earlier self-service delistings of ip, as the policy counts them."""
    for days in days_ago:
        at = NOW - timedelta(days=days)
        DelistRequest.objects.create(
            email=SENDER,
            ip=ip,
            state=State.COMPLETED,
            decided_by=audit.SELF_SERVICE,
            decided_at=at,
            confirmed_at=at,
            completed_at=at,
        )


# --- the verdict and the way ahead ------------------------------------------------------------


def test_a_listed_single_address_is_told_first_that_its_sender_can_delist_it_and_when(client, listed):
    said = verdict(check(client, LISTED_IP))
    assert said.startswith(f"{LISTED_IP} is on our blocklist.")
    assert "You can delist it yourself." in said
    assert "removed about 1 hour after you confirm" in said
    assert "This would be self-service delisting 1 of 3 in 90 days; after that a reviewer decides." in said
    assert (
        "Request delisting" in said and 'href="#delist-heading"' in check(client, LISTED_IP).content.decode()
    )


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [
        ([30], "This would be self-service delisting 2 of 3 in 90 days; after that a reviewer decides."),
        (
            [30, 60],
            "This would be the last of 3 self-service delistings in 90 days; after that a reviewer decides.",
        ),
        # Outside the window: it no longer counts.
        ([30, 91], "This would be self-service delisting 2 of 3 in 90 days; after that a reviewer decides."),
    ],
)
def test_the_lookup_says_where_the_ip_stands_on_the_self_service_ladder(client, listed, days_ago, expected):
    delisted_by_self_service(LISTED_IP, days_ago=days_ago)
    assert expected in verdict(check(client, LISTED_IP))


def test_a_used_up_ladder_sends_the_ip_to_a_reviewer_and_says_how_often_it_was_delisted(client, listed):
    delisted_by_self_service(LISTED_IP, days_ago=[1, 2, 3])
    said = verdict(check(client, LISTED_IP))
    assert "A reviewer decides on this listing." in said
    assert "This IP was already delisted by self-service 3 times in 90 days, which is all we allow." in said
    assert "You can delist it yourself" not in said
    assert "Once approved, it is removed about 1 hour later." in said


def test_singular_and_plural_forms_follow_the_numbers(client, listed, settings):
    settings.DELIST_SELF_SERVICE_LIMIT = 1
    settings.DELIST_SELF_SERVICE_WINDOW_DAYS = 1
    assert "This would be the only self-service delisting in one day;" in verdict(check(client, LISTED_IP))
    delisted_by_self_service(LISTED_IP, days_ago=[0.5])
    assert "already delisted by self-service once in one day," in verdict(check(client, LISTED_IP))


def test_a_range_goes_to_a_reviewer_because_it_holds_other_senders(client, listed):
    said = verdict(check(client, IN_RANGE_IP))
    assert said.startswith(f"{IN_RANGE_IP} is on our blocklist.")
    assert "A reviewer decides on this listing." in said
    assert "part of the range 37.120.8.0/24, which may hold other senders' addresses too" in said
    assert "Once approved, it is removed about 1 hour later. We email you the decision." in said
    assert "self-service delisting" not in said  # the ladder does not matter for a range


def test_an_entry_marked_for_review_says_so(client, listing):
    listing(LISTED_IP, self_service=False)
    said = verdict(check(client, LISTED_IP))
    assert "This listing is marked for a person to look at before it is removed." in said


def test_reviewing_every_request_is_told_as_such(client, listed, settings):
    settings.DELIST_REVIEW_ALL = True
    assert "Right now a person looks at every request." in verdict(check(client, LISTED_IP))


def test_no_self_service_at_all_is_told_like_reviewing_everything(client, listed, settings):
    settings.DELIST_SELF_SERVICE_LIMIT = 0
    said = verdict(check(client, LISTED_IP))
    assert "A reviewer decides on this listing." in said
    assert "Right now a person looks at every request." in said


@pytest.mark.parametrize(
    ("delay", "self_service", "review"),
    [
        (0, "removed within a minute after you confirm", "removed within a minute."),
        (1500, "removed about 25 minutes after you confirm", "removed about 25 minutes later."),
        (86400, "removed about 1 day after you confirm", "removed about 1 day later."),
    ],
)
def test_the_propagation_delay_is_told_in_words(client, listed, settings, delay, self_service, review):
    settings.DELIST_PROPAGATION_DELAY = delay
    assert self_service in verdict(check(client, LISTED_IP))
    assert review in verdict(check(client, IN_RANGE_IP))


def test_an_unlisted_ip_is_told_first_that_there_is_nothing_to_delist(client, listed):
    said = verdict(check(client, UNLISTED_IP))
    assert said.startswith(f"{UNLISTED_IP} is not on our blocklist.")
    assert "our list is not the cause" in said
    assert "Request delisting" not in said


def test_without_a_check_the_page_opens_with_its_own_heading(client, db):
    html = client.get(reverse("requests:home")).content.decode()
    assert 'id="verdict"' not in html
    assert "<h1>Get your IP address off our blocklist</h1>" in html


# --- a pasted bounce -------------------------------------------------------------------------


def test_the_whole_rejection_line_checks_its_address_and_says_which_it_took(client, listed):
    response = check(client, REJECTION)
    said = verdict(response)
    assert said.startswith(f"{LISTED_IP} is on our blocklist.")
    assert f"We took {LISTED_IP} from what you pasted." in said
    html = response.content.decode()
    # Both fields hold the address from now on, not the paste.
    assert re.search(rf'<input[^>]*name="ip" value="{re.escape(LISTED_IP)}"[^>]*id="check_ip"', html)
    assert re.search(rf'<input[^>]*name="ip" value="{re.escape(LISTED_IP)}"[^>]*id="id_ip"', html)


@pytest.mark.parametrize("pasted", ["[5.61.14.7]", "5.61.14.7/32", '"5.61.14.7"', " '5.61.14.7' "])
def test_brackets_prefix_and_quotes_are_taken_off_and_said(client, listed, pasted):
    assert f"We took {LISTED_IP} from what you pasted." in verdict(check(client, pasted))


def test_a_bare_address_is_not_called_a_paste(client, listed):
    assert "from what you pasted" not in verdict(check(client, LISTED_IP))


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("5.61.14.7 and 81.2.69.160", "What you pasted holds several IP addresses (5.61.14.7, 81.2.69.160)"),
        ("550 Access denied, see https://delist.example.org/", "We found no IP address in what you pasted"),
        ("5.61.14.07", "“5.61.14.07” has a leading zero in “07”"),
        ("IP [fe80::1%eth0]", "without a zone id"),
    ],
)
def test_a_paste_without_exactly_one_address_is_a_clear_error_at_the_top_and_at_the_field(
    client, listed, pasted, message
):
    response = check(client, pasted)
    html = response.content.decode()
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert message in summary and 'href="#check_ip"' in summary
    assert message in re.search(r'<ul class="field-errors" id="check_ip_error">.*?</ul>', html, re.S).group(0)
    assert 'id="verdict"' not in html


def test_a_paste_costs_the_lookup_what_a_bare_address_costs(client, listed, django_assert_num_queries):
    # The lookup and the ladder's count, as tests/test_query_counts.py pins for a bare address.
    with django_assert_num_queries(2):
        check(client, REJECTION)


def test_the_request_form_takes_the_address_from_a_pasted_line(
    client, listed, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("requests:submit"), {"email": SENDER, "ip": REJECTION})
    assert response.status_code == 302
    assert DelistRequest.objects.get().ip == LISTED_IP
    assert LISTED_IP in mailoutbox[0].body


def test_a_form_error_elsewhere_keeps_the_taken_address_and_says_so_beside_the_field(client, listed):
    response = client.post(reverse("requests:submit"), {"email": "nope", "ip": REJECTION})
    assert response.status_code == 400
    html = response.content.decode()
    field = re.search(r'<div class="field">\s*<label for="id_ip">.*?</div>', html, re.S).group(0)
    assert f'value="{LISTED_IP}"' in field
    assert f'<p class="field-note">We took {LISTED_IP} from what you pasted.</p>' in field
    assert DelistRequest.objects.count() == 0


def test_requesting_an_unlisted_ip_is_told_beside_the_field_and_in_the_summary(client, listed, mailoutbox):
    response = client.post(reverse("requests:submit"), {"email": SENDER, "ip": UNLISTED_IP})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<title>Error: " in html
    message = f"{UNLISTED_IP} is not on our blocklist, so there is nothing to delist."
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert f'<a href="#id_ip">IP address: {message}' in summary
    assert html.index('class="error-summary"') < html.index('id="check-heading"')
    errors = re.search(r'<ul class="field-errors" id="id_ip_error">(.*?)</ul>', html, re.S).group(1)
    assert message in errors
    assert 'aria-invalid="true"' in re.search(r'<input[^>]*id="id_ip"[^>]*>', html).group(0)
    assert DelistRequest.objects.count() == 0 and mailoutbox == []


# --- Swedish ---------------------------------------------------------------------------------


def test_the_way_ahead_reads_in_swedish_with_its_plural_forms(client, listed, settings):
    settings.DELIST_SELF_SERVICE_WINDOW_DAYS = 1
    swedish = {"accept-language": "sv-SE,sv;q=0.9"}
    said = verdict(check(client, LISTED_IP, **swedish))
    assert said.startswith(f"{LISTED_IP} finns på vår blockeringslista.")
    assert "Du kan avlista den själv." in said
    assert "inom en dag" in said
    delisted_by_self_service(LISTED_IP, days_ago=[0.1, 0.2, 0.3])
    said = verdict(check(client, LISTED_IP, **swedish))
    assert "3 gånger inom en dag" in said


# --- valid HTML ------------------------------------------------------------------------------


def test_every_time_element_carries_a_datetime_without_microseconds(client, listing):
    listing(LISTED_IP, expires_at=NOW + timedelta(days=7))
    html = check(client, LISTED_IP).content.decode()
    values = re.findall(r'<time datetime="([^"]*)"', html)
    assert values == ["2026-03-14T09:26:53Z", "2026-03-21T09:26:53Z"]


def _start_pages(client, listing) -> dict[str, str]:
    listing(LISTED_IP, reason="spam trap hits", expires_at=NOW + timedelta(days=7))
    listing("37.120.8.0/24", reason="snowshoe spam")
    home = reverse("requests:home")
    submit = reverse("requests:submit")
    return {
        "empty": client.get(home),
        "listed-pasted": client.get(home, {"ip": REJECTION}),
        "range": client.get(home, {"ip": IN_RANGE_IP}),
        "unlisted": client.get(home, {"ip": UNLISTED_IP}),
        "check-error": client.get(home, {"ip": "5.61.14.07"}),
        "form-errors": client.post(submit, {"email": "nope", "ip": "10.0.0.1"}),
        "form-error-pasted": client.post(submit, {"email": "", "ip": REJECTION}),
        "request-unlisted": client.post(submit, {"email": SENDER, "ip": UNLISTED_IP}),
    }


@needs_checker
def test_the_start_page_is_valid_html_to_the_nu_html_checker(client, listing, tmp_path):
    pages = _start_pages(client, listing)
    errors = html_errors({name: response.content for name, response in pages.items()}, tmp_path)
    assert not errors, "\n".join(errors)
    assert len(pages) == 8
