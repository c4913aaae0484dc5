"""The admin login locks an account out from one client after five failed passwords (django-axes)."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

LOGIN = reverse("admin:login")
PASSWORD = "a-long-password-1"
# Two clients, as the portal sees them (public addresses: nothing here depends on that).
HOME = "81.2.69.160"
ELSEWHERE = "81.2.69.161"


@pytest.fixture
def desk(db) -> User:
    return User.objects.create_superuser("desk", "desk@example.org", PASSWORD)


def log_in(client, password: str, *, address: str = HOME, username: str = "desk", **headers):
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": reverse("admin:index")},
        REMOTE_ADDR=address,
        **headers,
    )


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def lock_out(client, *, address: str = HOME, **headers) -> None:
    for _ in range(5):
        log_in(client, "wrong", address=address, **headers)
    # Locked: the right password from here is refused too.
    assert log_in(client, PASSWORD, address=address, **headers).status_code == 429


def test_four_wrong_passwords_still_let_the_right_one_in(client, desk):
    for _ in range(4):
        assert log_in(client, "wrong").status_code == 200  # the login form again, with its error
    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_after_five_wrong_passwords_the_right_one_is_refused_with_a_friendly_page(client, desk):
    lock_out(client)
    response = log_in(client, PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    html = response.content.decode()
    assert "Too many failed logins for this account from your address." in html
    assert "Try again after" in html and "UTC (in 30\xa0minutes)" in html
    assert 'id="site-name"' in html  # the admin's own page, not a bare message
    assert 30 * 60 < int(response["Retry-After"]) <= 31 * 60


def test_a_lockout_holds_only_for_that_account_from_that_client(client, desk):
    User.objects.create_superuser("other", "other@example.org", PASSWORD)
    lock_out(client)
    assert log_in(client, PASSWORD, address=ELSEWHERE).status_code == 302
    client.logout()
    assert log_in(client, PASSWORD, username="other").status_code == 302


def test_behind_a_proxy_the_lockout_counts_the_address_the_proxy_saw(client, desk, settings):
    # The portal's own client address, not REMOTE_ADDR (which is the proxy for everyone).
    settings.TRUSTED_PROXY_COUNT = 1
    lock_out(client, address="10.0.0.2", HTTP_X_FORWARDED_FOR=HOME)
    assert AccessAttempt.objects.get().ip_address == HOME
    assert log_in(client, PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR=HOME).status_code == 429
    assert log_in(client, PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 302


def test_the_lockout_lifts_by_itself_after_the_cool_off(client, desk):
    lock_out(client)
    attempt = AccessAttempt.objects.get()
    AccessAttempt.objects.update(attempt_time=attempt.attempt_time - timedelta(minutes=31))
    assert log_in(client, PASSWORD).status_code == 302


def test_after_axes_reset_the_right_password_works_again(client, desk):
    lock_out(client)
    call_command("axes_reset_username", "desk")
    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_an_admin_unlocks_an_account_by_deleting_its_access_attempt(client, desk):
    lock_out(client)
    attempt = AccessAttempt.objects.get(username="desk", ip_address=HOME)
    # Another admin, already logged in, deletes the attempt in axes' admin.
    other = User.objects.create_superuser("boss", "boss@example.org", PASSWORD)
    client.force_login(other)
    unlock = client.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [attempt.pk], "post": "yes"},
    )
    assert unlock.status_code == 302 and not AccessAttempt.objects.exists()
    client.logout()
    assert log_in(client, PASSWORD).status_code == 302
