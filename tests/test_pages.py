"""What the sender's pages and mails say, and how they are built for everyone to use."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app.models import DelistRequest, State
from requests_app.templatetags.delist import moment
from tests.conftest import (
    IN_RANGE_IP,
    LISTED_IP,
    SENDER,
    UNLISTED_IP,
    confirmation_link,
    link_path,
    press_delist_button,
)


@pytest.fixture
def submitted(client, listed, mailoutbox, django_capture_on_commit_callbacks):
    """Submits a request for ip; returns (request, status page path, confirmation link path)."""

    def make(ip=LISTED_IP):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("requests:submit"), {"email": SENDER, "ip": ip})
        request = DelistRequest.objects.latest("created_at")
        return request, response["Location"], link_path(confirmation_link(mailoutbox[-1]))

    return make


def press_delist(client, link, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link)


def page(client, path, **query) -> str:
    response = client.get(path, query)
    assert response.status_code == 200
    return response.content.decode().replace("\xa0", " ")  # Django joins "25 minutes" with a no-break space


def test_the_start_page_says_what_the_list_is_and_what_to_fix_before_asking(client, db):
    html = page(client, "/")
    assert "refuse mail from the IP addresses on it" in html
    for cause in ("Compromised accounts", "Open relays", "SPF, DKIM or DMARC", "bought lists"):
        assert cause in html
    assert "listed again" in html


def test_the_lookup_of_a_single_address_tells_since_when_why_the_code_and_self_service(client, listed):
    html = page(client, "/", ip=LISTED_IP)
    assert f"{LISTED_IP} is on our blocklist." in html
    assert listed["single"].listed_at.strftime("%H:%M UTC") in html.replace("</time>", "")
    assert "spam trap hits" in html and "5.7.606" in html and "this single address" in html
    assert "You can delist it yourself" in html and "about 1 hour after you confirm" in html


def test_the_lookup_of_an_address_in_a_range_says_a_reviewer_decides(client, listed):
    html = page(client, "/", ip=IN_RANGE_IP)
    assert "part of the range 37.120.8.0/24" in html and "snowshoe spam" in html
    assert "A reviewer decides on this listing" in html
    assert "You can delist it yourself" not in html


def test_the_lookup_asks_the_review_policy_that_will_decide(client, listed, settings):
    settings.DELIST_REVIEW_ALL = True
    assert "A reviewer decides on this listing" in page(client, "/", ip=LISTED_IP)


def test_the_lookup_of_an_unlisted_address_says_our_list_is_not_the_cause(client, listed):
    html = page(client, "/", ip=UNLISTED_IP)
    assert f"{UNLISTED_IP} is not on our blocklist." in html
    assert "our list is not the cause" in html


def test_errors_are_summarised_at_the_top_and_tied_to_their_field(client, listed):
    response = client.post(reverse("requests:submit"), {"email": "nope", "ip": "10.0.0.1"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "<title>Error: " in html
    summary = html.index('class="error-summary"')
    assert summary < html.index('id="check-heading"')  # above both forms
    assert 'href="#id_email"' in html and 'href="#id_ip"' in html
    for name in ("email", "ip"):
        tag = re.search(rf'<input[^>]*id="id_{name}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in tag
        described = re.search(r'aria-describedby="([^"]+)"', tag).group(1).split()
        assert described == [f"id_{name}_helptext", f"id_{name}_error"]
        for element_id in described:
            assert f'id="{element_id}"' in html
    error_list = re.search(r'<ul class="field-errors" id="id_ip_error">(.*?)</ul>', html, re.S).group(1)
    assert "is not a public address" in error_list


def test_every_input_has_a_label(client, listed):
    html = client.post(reverse("requests:submit"), {"email": "", "ip": ""}).content.decode()
    for input_id in re.findall(r'<input[^>]*type="(?:text|email)"[^>]*id="([^"]+)"', html):
        assert f'<label for="{input_id}">' in html


def test_the_language_switch_returns_to_the_start_page_after_a_post(client, listed):
    html = client.post(reverse("requests:submit"), {"email": "", "ip": ""}).content.decode()
    assert 'name="next" value="/"' in html


def test_the_status_page_says_when_the_ip_will_be_removed(
    client, submitted, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 1500
    request, status, link = submitted()
    press_delist(client, link, django_capture_on_commit_callbacks)
    request.refresh_from_db()
    html = page(client, status)
    assert f"will be removed at {request.effective_at:%H:%M} UTC on" in html
    assert "in about 25 minutes" in html
    assert "We email you when it is done" in html


@pytest.mark.parametrize(
    ("state", "refreshes"),
    [
        (State.PENDING, True),
        (State.APPROVED, True),
        (State.NEEDS_REVIEW, True),
        (State.COMPLETED, False),
        (State.REJECTED, False),
        (State.EXPIRED, False),
        (State.SUPERSEDED, False),
    ],
)
def test_the_status_page_refreshes_itself_only_while_something_may_change(
    client, submitted, state, refreshes
):
    request, status, _link = submitted()
    now = timezone.now()
    DelistRequest.objects.filter(pk=request.pk).update(
        state=state, effective_at=now + timedelta(minutes=5), completed_at=now, closed_at=now, decided_at=now
    )
    html = page(client, status)
    assert ("data-refresh=" in html) is refreshes
    assert 'http-equiv="refresh"' not in html  # only the script looks again, and only with JavaScript on
    assert "js/portal.js" in html


def test_a_rejected_request_shows_the_reviewers_reason_and_the_way_back(client, submitted):
    request, status, _link = submitted(IN_RANGE_IP)
    DelistRequest.objects.filter(pk=request.pk).update(
        state=State.REJECTED, decided_at=timezone.now(), decision_reason="Relay still open."
    )
    html = page(client, status)
    assert "Relay still open." in html and "did not approve" in html
    assert f'href="/?ip={IN_RANGE_IP}"' in html


def test_the_confirmation_mail_reads_well_as_plain_text(submitted, mailoutbox):
    request, _status, _link = submitted()
    message = mailoutbox[-1]
    lines = message.body.splitlines()
    link = confirmation_link(message)
    assert link in lines  # on a line of its own
    assert LISTED_IP in message.body and LISTED_IP in message.subject
    request.refresh_from_db()
    # Formatted as the mail does: a test at 08:59 must not strip the hour's zero.
    assert f"until {moment(request.token_expires_at)}." in message.body
    assert "<" not in message.body and "&" not in message.body  # no markup, no escaping
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and 'lang="en"' in html and f'href="{link}"' in html


@pytest.mark.parametrize("state", ["completed", "needs_review", "rejected"])
def test_every_later_mail_names_the_ip_and_links_the_status_page_on_its_own_line(
    client, submitted, mailoutbox, state, settings, django_capture_on_commit_callbacks
):
    from requests_app import emails

    request, status, _link = submitted()
    DelistRequest.objects.filter(pk=request.pk).update(
        completed_at=timezone.now(), decision_reason="Relay still open."
    )
    request.refresh_from_db()
    {"completed": emails.send_completed, "needs_review": emails.send_needs_review}.get(
        state, emails.send_rejected
    )(request)
    message = mailoutbox[-1]
    assert LISTED_IP in message.subject and LISTED_IP in message.body
    assert f"https://delist.example.org{status}" in message.body.splitlines()
    assert "<" not in message.body
