"""Approving shows what will be delisted first, wide ranges take a superuser, and an approval
can be revoked until it is due."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, User
from django.urls import reverse

from blocklist.models import Entry, Event
from requests_app import services
from requests_app.checks import check_delist_settings
from requests_app.models import Mail, State
from tests.conftest import LISTED_IP

QUEUE = reverse("admin:requests_app_reviewqueue_changelist")
REQUESTS = reverse("admin:requests_app_delistrequest_changelist")
WIDE_RANGE = "37.120.0.0/16"  # covers IN_RANGE_IP, like the /24 the `listed` fixture holds


@pytest.fixture
def reviewer_client(client, db):
    user = User.objects.create_user("rita", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="reviewer"))
    client.force_login(user)
    return client


def approve(client, requests, *, confirm: bool, url: str = QUEUE, follow: bool = False):
    data = {"action": "approve", ACTION_CHECKBOX_NAME: [r.pk for r in requests]}
    if confirm:
        data["confirm"] = "yes"
    return client.post(url, data, follow=follow)


def revoke(client, requests, reason: str | None = "Still sending spam from this address."):
    data = {"action": "revoke", ACTION_CHECKBOX_NAME: [r.pk for r in requests]}
    if reason is not None:
        data["reason"] = reason
    return client.post(REQUESTS, data)


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- approving --------------------------------------------------------------------


def test_approving_first_lists_every_network_and_its_size_and_changes_nothing(
    admin_client, confirmed, listing
):
    listing(WIDE_RANGE)
    request = confirmed()
    page = approve(admin_client, [request], confirm=False)
    assert page.status_code == 200
    html = page.content.decode()
    assert "37.120.8.0/24" in html and "256" in html
    assert WIDE_RANGE in html and "65,536" in html
    assert "Wide range" in html  # the /16, marked
    assert 'name="confirm"' in html
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW and request.effective_at is None


def test_an_ipv6_range_shows_its_size_as_a_power_of_two(admin_client, confirmed, listing):
    listing("2a05:d018:1::/48")
    html = approve(admin_client, [confirmed("2a05:d018:1:2::7")], confirm=False).content.decode()
    assert "2a05:d018:1::/48" in html and "2⁸⁰ ≈ 1.2 × 10²⁴" in html
    assert "2a05:d018:1:2::/64" in html and "2⁶⁴ ≈ 1.8 × 10¹⁹" in html


def test_confirming_approves_through_the_service(reviewer_client, confirmed, settings):
    settings.DELIST_PROPAGATION_DELAY = 600
    request = confirmed()
    response = approve(reviewer_client, [request], confirm=True)
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.APPROVED and request.decided_by == "rita"
    assert request.effective_at - request.decided_at == timedelta(seconds=600)
    assert request.events.filter(action=Event.Action.APPROVED, actor="rita").exists()


def test_a_reviewer_who_is_not_a_superuser_cannot_approve_a_wide_range(reviewer_client, confirmed, listing):
    listing(WIDE_RANGE)
    listing("81.2.69.0/24")
    wide, narrow = confirmed(), confirmed("81.2.69.5")
    page = approve(reviewer_client, [wide, narrow], confirm=False).content.decode()
    assert "only a superuser may approve it" in page

    done = approve(reviewer_client, [wide, narrow], confirm=True, follow=True)
    wide.refresh_from_db()
    narrow.refresh_from_db()
    assert wide.state == State.NEEDS_REVIEW  # not approved: still waiting for a superuser
    assert narrow.state == State.APPROVED
    assert any("only a superuser may approve it, so it stays" in m for m in shown_messages(done))
    assert not wide.events.filter(action=Event.Action.APPROVED).exists()


def test_a_superuser_approves_a_wide_range(admin_client, confirmed, listing):
    listing(WIDE_RANGE)
    request = confirmed()
    approve(admin_client, [request], confirm=True)
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_a_range_as_wide_as_the_limit_is_not_wide_and_the_limit_follows_the_setting(
    reviewer_client, confirmed, settings
):
    request = confirmed()  # covered by a /24 only
    settings.DELIST_REVIEW_WIDE_PREFIX_V4 = 25
    approve(reviewer_client, [request], confirm=True)
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW
    settings.DELIST_REVIEW_WIDE_PREFIX_V4 = 24
    approve(reviewer_client, [request], confirm=True)
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_an_ipv6_range_wider_than_its_limit_needs_a_superuser(reviewer_client, confirmed, listing, settings):
    settings.DELIST_REVIEW_WIDE_PREFIX_V6 = 64
    listing("2a05:d018:1::/48")
    request = confirmed("2a05:d018:1:2::7")
    approve(reviewer_client, [request], confirm=True)
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DELIST_REVIEW_WIDE_PREFIX_V4", 33),
        ("DELIST_REVIEW_WIDE_PREFIX_V4", -1),
        ("DELIST_REVIEW_WIDE_PREFIX_V6", 129),
    ],
)
def test_a_wide_prefix_out_of_range_stops_start_up(settings, name, value):
    setattr(settings, name, value)
    errors = check_delist_settings()
    assert len(errors) == 1 and name in errors[0].msg


# --- revoking ---------------------------------------------------------------------


@pytest.fixture
def approved(confirmed, settings):
    """A self-service approval, due in ten minutes."""
    settings.DELIST_PROPAGATION_DELAY = 600
    request = confirmed(LISTED_IP)
    assert request.state == State.APPROVED
    return request


def test_a_reviewer_revokes_an_approval_before_it_is_due_and_the_sender_reads_why(
    client, reviewer_client, approved, mailoutbox, django_capture_on_commit_callbacks
):
    due_at = approved.effective_at
    ask = revoke(reviewer_client, [approved], reason=None)
    assert ask.status_code == 200 and "Reason the sender will read" in ask.content.decode()
    approved.refresh_from_db()
    assert approved.state == State.APPROVED  # nothing happened yet

    with django_capture_on_commit_callbacks(execute=True):
        assert revoke(reviewer_client, [approved]).status_code == 302
    approved.refresh_from_db()
    assert approved.state == State.REJECTED and approved.effective_at is None
    assert approved.decision_reason == "Still sending spam from this address."
    event = approved.events.get(action=Event.Action.REVOKED)
    assert (event.actor, event.reason) == ("rita", "Still sending spam from this address.")

    mail = mailoutbox[-1]
    assert "called off" in mail.subject and "Still sending spam from this address." in mail.body
    assert approved.mails.get(kind=Mail.Kind.REVOKED).sent_at is not None

    client.logout()
    page = client.get(reverse("requests:status", args=[approved.status_key])).content.decode()
    assert "Approval revoked by a reviewer" in page and "Still sending spam from this address." in page

    services.sweep(now=due_at + timedelta(minutes=1))
    approved.refresh_from_db()
    assert approved.state == State.REJECTED
    assert Entry.objects.get(network="5.61.14.7/32").is_active()  # never delisted


def test_an_approval_that_is_due_cannot_be_revoked(approved):
    assert not services.request_revoke(
        request=approved, actor="rita", reason="too late", now=approved.effective_at
    )
    approved.refresh_from_db()
    assert approved.state == State.APPROVED and not approved.events.filter(action="revoked").exists()


def test_once_the_sweep_delisted_it_a_request_cannot_be_revoked(approved):
    before_due = approved.effective_at - timedelta(minutes=1)
    assert services.delisting_apply(request_id=approved.pk, now=approved.effective_at)
    assert not services.request_revoke(request=approved, actor="rita", reason="too late", now=before_due)
    approved.refresh_from_db()
    assert approved.state == State.COMPLETED


def test_once_revoked_the_sweep_does_not_delist(approved):
    due_at = approved.effective_at
    assert services.request_revoke(
        request=approved, actor="rita", reason="relay open", now=due_at - timedelta(minutes=1)
    )
    assert not services.delisting_apply(request_id=approved.pk, now=due_at + timedelta(hours=1))
    assert Entry.objects.get(network="5.61.14.7/32").is_active()


def test_revoking_needs_a_reason(reviewer_client, approved):
    with pytest.raises(ValueError):
        services.request_revoke(request=approved, actor="rita", reason="  ")
    assert revoke(reviewer_client, [approved], reason="").status_code == 200  # asks again
    approved.refresh_from_db()
    assert approved.state == State.APPROVED


def test_a_request_in_review_is_not_revoked(reviewer_client, confirmed):
    request = confirmed()
    revoke(reviewer_client, [request])
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW


def test_staff_without_the_review_permission_cannot_revoke(client, approved):
    clerk = User.objects.create_user("carl", is_staff=True)
    clerk.user_permissions.add(
        *Group.objects.get(name="reviewer").permissions.exclude(codename="review_delistrequest")
    )
    client.force_login(clerk)
    revoke(client, [approved])
    approved.refresh_from_db()
    assert approved.state == State.APPROVED


def test_the_review_queue_offers_no_revoke(reviewer_client, confirmed):
    confirmed()
    choices = dict(reviewer_client.get(QUEUE).context["action_form"].fields["action"].choices)
    assert "approve" in choices and "revoke" not in choices
    choices = dict(reviewer_client.get(REQUESTS).context["action_form"].fields["action"].choices)
    assert "revoke" in choices
