"""The emailed link: GET and HEAD show, only the Delist IP button confirms."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app import services
from requests_app.models import DelistRequest, State
from requests_app.tokens import hash_token
from tests.conftest import (
    IN_RANGE_IP,
    LISTED_IP,
    SENDER,
    confirmation_link,
    link_path,
    open_link,
    press_delist_button,
)


@pytest.fixture
def requested(client, listed, mailoutbox, django_capture_on_commit_callbacks):
    """Submits a request for ip and returns (request, path of the emailed link)."""

    def make(ip=LISTED_IP, email=SENDER):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": email, "ip": ip})
        return DelistRequest.objects.latest("created_at"), link_path(confirmation_link(mailoutbox[-1]))

    return make


def snapshot(request):
    request.refresh_from_db()
    return {f.attname: getattr(request, f.attname) for f in request._meta.concrete_fields}


def press_delist(client, link, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return press_delist_button(client, link)


def test_the_database_holds_only_a_hash_of_the_token(requested):
    request, link = requested()
    status_key, _dot, secret = link.rsplit("/", 1)[1].partition(".")
    assert len(secret) >= 22  # 128 bits or more
    request.refresh_from_db()
    assert status_key == request.status_key
    assert request.token_hash == hash_token(secret)
    assert secret not in str(snapshot(request).values())


def test_the_hash_is_blanked_once_the_request_leaves_pending(
    client, requested, django_capture_on_commit_callbacks
):
    request, link = requested()
    press_delist(client, link, django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.state == State.APPROVED and request.token_hash is None
    # The old link still gets the page that says why it no longer works.
    again = client.get(link)
    assert again.status_code == 410 and "already used" in again.content.decode()


def test_a_superseded_or_expired_request_keeps_no_hash(client, requested):
    first, _link = requested()
    second, _link = requested()
    first.refresh_from_db()
    assert first.state == State.SUPERSEDED and first.token_hash is None
    DelistRequest.objects.filter(pk=second.pk).update(token_expires_at=timezone.now())
    services.sweep()
    second.refresh_from_db()
    assert second.state == State.EXPIRED and second.token_hash is None


def test_two_tabs_confirm_each_their_own_request(
    client, listing, requested, django_capture_on_commit_callbacks
):
    listing("81.2.69.161")
    first, first_link = requested(ip=LISTED_IP)
    second, second_link = requested(ip="81.2.69.161")
    first_page = open_link(client, first_link)
    second_page = open_link(client, second_link)  # the second tab opens after the first
    assert first_page != second_page
    html = client.get(first_page).content.decode()  # tab one, reloaded, still shows its request
    assert LISTED_IP in html and f'name="request" value="{first.pk}"' in html
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:confirm"), {"request": first.pk})
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == State.APPROVED and second.state == State.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:confirm"), {"request": second.pk})
    second.refresh_from_db()
    assert second.state == State.APPROVED


def test_a_request_id_the_session_did_not_open_confirms_nothing(client, requested):
    mine, my_link = requested()
    theirs, _their_link = requested(email="someone@else.example.net")
    open_link(client, my_link)
    response = client.post(reverse("requests:confirm"), {"request": theirs.pk})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == State.PENDING


def test_the_session_keeps_the_hash_never_the_token(client, requested):
    request, link = requested()
    open_link(client, link)
    secret = link.rsplit(".", 1)[1]
    stored = client.session.load()
    assert secret not in str(stored)
    assert stored["delist_confirmations"] == {str(request.pk): hash_token(secret)}


def test_get_and_head_show_the_request_and_change_nothing(client, requested):
    request, link = requested()
    before = snapshot(request)
    for _ in range(2):
        response = client.get(link, follow=True)
        assert response.status_code == 200
        html = response.content.decode()
        assert LISTED_IP in html and "Delist IP" in html
        assert SENDER not in html and request.masked_email in html
        assert client.head(link).status_code == 302
        assert client.head(open_link(client, link)).status_code == 200
    assert snapshot(request) == before


def test_the_token_leaves_the_url_before_the_page_is_shown(client, requested):
    _request, link = requested()
    response = client.get(link)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('requests:confirm')}?request={_request.pk}"
    assert response["Cache-Control"].startswith("max-age=0")


def test_pressing_delist_ip_approves_a_self_service_listing_after_the_delay(
    client, requested, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 1500
    request, link = requested()
    response = press_delist(client, link, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert response["Location"] == reverse("requests:status", args=[request.status_key])
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert request.effective_at - request.decided_at == timedelta(seconds=1500)
    assert [e.network for e in request.entries.all()] == ["5.61.14.7/32"]

    page = client.get(response["Location"]).content.decode()
    assert "in about 25" in page and "UTC" in page


def test_the_link_works_only_once(client, requested, django_capture_on_commit_callbacks):
    request, link = requested()
    press_delist(client, link, django_capture_on_commit_callbacks)
    again = client.get(link)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    client.session.flush()
    assert client.post(reverse("requests:confirm")).status_code == 404
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_an_expired_link_gets_its_own_page_and_confirms_nothing(client, requested, settings):
    request, link = requested()
    DelistRequest.objects.filter(pk=request.pk).update(token_expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(link)
    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
    assert client.post(reverse("requests:confirm")).status_code == 404
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_the_link_expires_after_the_token_ttl(requested, settings):
    settings.DELIST_TOKEN_TTL = 600
    request, _link = requested()
    request.refresh_from_db()
    assert timedelta(seconds=590) < request.token_expires_at - timezone.now() <= timedelta(seconds=600)


@pytest.mark.parametrize(
    "token", ["A" * 22, "short", "x" * 300, "../../etc/passwd", f"{'A' * 22}.{'B' * 22}", "%00", "a.b"]
)
def test_an_unknown_link_is_a_clear_404_not_a_500(client, db, token):
    response = client.get(f"/confirm/{token}")
    assert response.status_code == 404
    assert "We do not recognise this link" in response.content.decode()


def test_posting_without_a_link_confirms_nothing(client, requested):
    request, _link = requested()
    response = client.post(reverse("requests:confirm"))
    assert response.status_code == 404
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_the_button_is_csrf_protected(requested):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    request, link = requested()
    open_link(strict, link)
    assert strict.post(reverse("requests:confirm"), {"request": request.pk}).status_code == 403
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_a_covering_range_sends_the_request_to_review(
    client, requested, mailoutbox, django_capture_on_commit_callbacks
):
    request, link = requested(ip=IN_RANGE_IP)
    press_delist(client, link, django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW
    assert request.effective_at is None
    assert "in review" in mailoutbox[-1].subject


def test_an_entry_that_disallows_self_service_sends_the_request_to_review(
    client, listing, requested, django_capture_on_commit_callbacks
):
    listing("81.2.69.161", self_service=False)
    request, link = requested(ip="81.2.69.161")
    press_delist(client, link, django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.state == State.NEEDS_REVIEW


def test_the_confirm_page_answers_only_get_head_and_post(client, db):
    assert client.put(reverse("requests:confirm")).status_code == 405


def test_a_link_mailed_before_links_carried_the_status_key_still_confirms(
    client, requested, django_capture_on_commit_callbacks
):
    from requests_app.tokens import hash_token

    request, _link = requested()
    old_token = "B" * 22
    DelistRequest.objects.filter(pk=request.pk).update(token_hash=hash_token(old_token))
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, f"/confirm/{old_token}")
    request.refresh_from_db()
    assert request.state == State.APPROVED and request.token_hash is None
