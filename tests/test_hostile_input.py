"""Hostile input through the real views, the API and the admin login.

Every case gets a clear answer (a 4xx, or the form again with its error) and changes nothing:
the rows of every table that matters are counted before and after. A 500 fails the test, since
the test client re-raises what a view lets through.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from blocklist.models import Entry, Event
from requests_app.models import DelistRequest, Mail
from tests.conftest import LISTED_IP, SENDER

SUBMIT = "/request"
KEY = "A" * 22  # shaped like a status key, matching none


def rows() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (DelistRequest, Mail, Entry, Event, User)}


BAD_IPS = [
    ("empty", "", "This field is required"),
    ("octet out of range", "999.1.1.1", "is not a valid IPv4 or IPv6 address"),
    ("three octets", "5.61.14", "is not a valid IPv4 or IPv6 address"),
    ("double dot", "5..61.14.7", "is not a valid IPv4 or IPv6 address"),
    ("leading zero", "5.61.14.07", "has a leading zero in “07”"),
    ("hex octets", "0x05.0x3d.0x0e.0x07", "is not a valid IPv4 or IPv6 address"),
    ("a number", "87166471", "is not a valid IPv4 or IPv6 address"),
    ("arabic digits", "٥.٦١.١٤.٧", "is not a valid IPv4 or IPv6 address"),
    ("full-width digits", "５.６１.１４.７", "is not a valid IPv4 or IPv6 address"),
    ("nul after", "5.61.14.7\x00", "Null characters are not allowed"),
    ("nul alone", "\x00", "Null characters are not allowed"),
    ("private", "10.0.0.1", "is not a public address"),
    ("loopback", "127.0.0.1", "is not a public address"),
    ("v6 loopback", "::1", "is not a public address"),
    ("documentation v6", "2001:db8::1", "is not a public address"),
    ("multicast", "224.0.0.1", "is not a public address"),
    ("broadcast", "255.255.255.255", "is not a public address"),
    ("unspecified", "0.0.0.0", "is not a public address"),
    ("mapped private", "::ffff:10.0.0.1", "is not a public address"),
    ("zone id", "fe80::1%eth0", "without a zone id"),
    ("a network", "37.120.8.0/24", "not a network"),
    ("too long", "5" * 5000, "at most 1000 characters"),
    ("markup", "<script>alert(1)</script>", "We found no IP address in what you pasted"),
    ("right-to-left mark", "\u202e5.61.14.7", "is not a valid IPv4 or IPv6 address"),
]

# Hostile text around one address, as a pasted bounce is: the address is taken (strictly), the
# rest dropped, and none of it shown again.
WRAPPED_IPS = [
    ("markup", "<b>5.61.14.7", "<b>"),
    ("sql", "5.61.14.7' OR '1'='1", "OR '1'"),
    ("header injection", "5.61.14.7\r\nX-Injected: 1", "X-Injected: 1"),
]

BAD_EMAILS = [
    ("empty", "", "This field is required"),
    ("no at", "nope", "Enter a valid email address"),
    ("no domain", "postmaster@", "Enter a valid email address"),
    ("ip literal", "x@[10.0.0.5]", "not at an IP address"),
    ("localhost", "postmaster@localhost", "not at localhost"),
    ("single label", "postmaster@mailhost", "not a single name"),
    ("nul", "a\x00@mail.example.com", "Null characters are not allowed"),
    ("bcc injection", "a@mail.example.com\r\nBcc: victim@example.com", "Enter a valid email address"),
    ("two addresses", "a@mail.example.com,b@mail.example.com", "Enter a valid email address"),
    ("angle brackets", "<a@mail.example.com>", "Enter a valid email address"),
    ("too long", "a" * 300 + "@mail.example.com", "at most 254 characters"),
    ("dot dot domain", "a@mail..example.com", "Enter a valid email address"),
    ("hyphen label", "a@-mail.example.com", "Enter a valid email address"),
]


@pytest.mark.parametrize("value, message", [c[1:] for c in BAD_IPS], ids=[c[0] for c in BAD_IPS])
def test_a_bad_ip_in_the_request_form_is_a_400_that_says_why(client, listed, value, message):
    before = rows()
    response = client.post(SUBMIT, {"email": SENDER, "ip": value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert rows() == before


@pytest.mark.parametrize("value, message", [c[1:] for c in BAD_EMAILS], ids=[c[0] for c in BAD_EMAILS])
def test_a_bad_email_in_the_request_form_is_a_400_that_says_why(client, listed, value, message):
    before = rows()
    response = client.post(SUBMIT, {"email": value, "ip": LISTED_IP})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert rows() == before


@pytest.mark.parametrize("value, message", [c[1:] for c in BAD_IPS[1:]], ids=[c[0] for c in BAD_IPS[1:]])
def test_a_bad_ip_in_the_lookup_shows_the_form_with_its_error(client, listed, value, message):
    before = rows()
    response = client.get("/", {"ip": value})
    assert response.status_code == 200  # a search page: the form comes back with the error
    assert message in response.content.decode()
    assert rows() == before


@pytest.mark.parametrize("value, rest", [c[1:] for c in WRAPPED_IPS], ids=[c[0] for c in WRAPPED_IPS])
def test_hostile_text_around_one_address_leaves_just_the_address(client, listed, value, rest):
    before = rows()
    html = client.get("/", {"ip": value}).content.decode()
    assert f"We took {LISTED_IP} from what you pasted." in html
    assert rest not in html
    assert rows() == before
    assert client.post(SUBMIT, {"email": SENDER, "ip": value}).status_code == 302
    assert DelistRequest.objects.get().ip == LISTED_IP


@pytest.mark.parametrize(
    "value",
    [
        "999.1.1.1",
        "%00",
        "1.2.3.4%2500",
        "..%2F..%2Fetc",
        "a" * 500,
        "٥.٦١.١٤.٧",
        "10.0.0.1",
        "::1",
        "'%20OR%201=1",
    ],
)
def test_a_bad_ip_in_the_api_is_a_400_json_error(client, listed, value):
    before = rows()
    response = client.get(f"/api/v1/ip/{value}")
    assert response.status_code in (400, 404)
    if response.status_code == 400:
        assert response.json()["error"]
    assert rows() == before


@pytest.mark.parametrize(
    "key", ["%00", "x" * 500, "..%2F..%2Fetc", KEY[:-1], KEY, "' OR 1=1 --", "%E2%80%AE"]
)
def test_a_bad_status_key_is_a_404(client, db, key):
    response = client.get(f"/status/{key}")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.fixture
def pending(client, listed, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(SUBMIT, {"email": SENDER, "ip": LISTED_IP})
    request = DelistRequest.objects.get()
    link_token = mailoutbox[-1].body.split("/confirm/", 1)[1].split()[0]
    return request, link_token


def tampered(token: str) -> list[str]:
    key, secret = token.split(".")
    flipped = ("B" if secret[0] != "B" else "C") + secret[1:]
    return [
        f"{key}.{flipped}",  # one character of the secret changed
        f"{secret}.{key}",  # the halves swapped
        f"{key}.",
        f".{secret}",
        f"{key}.{secret}.x",
        f"{key}.{secret}%00",
        f"{key}",
        f"{key.lower()}.{secret}",
        f"{KEY}.{secret}",  # another request's key
    ]


def test_a_tampered_link_is_unknown_and_confirms_nothing(client, pending):
    request, token = pending
    for bad in tampered(token):
        before = rows()
        response = client.get(f"/confirm/{bad}")
        assert response.status_code == 404, bad
        assert "We do not recognise this link" in response.content.decode()
        assert rows() == before
    request.refresh_from_db()
    assert request.state == "pending"


@pytest.mark.parametrize("request_id", ["", "abc", "-1", "1 OR 1=1", "9" * 40, "0", "1.0", "\x00"])
def test_a_confirmation_post_for_a_request_the_session_did_not_open_confirms_nothing(
    client, pending, request_id
):
    request, token = pending
    client.get(f"/confirm/{token}")
    before = rows()
    response = client.post("/confirm/", {"request": request_id})
    assert response.status_code == 404
    assert rows() == before
    request.refresh_from_db()
    assert request.state == "pending"


def test_a_confirmation_without_csrf_is_refused(pending):
    request, token = pending
    browser = Client(enforce_csrf_checks=True)
    browser.get(f"/confirm/{token}")
    assert browser.post("/confirm/", {"request": request.pk}).status_code == 403
    request.refresh_from_db()
    assert request.state == "pending"


def test_a_submission_without_csrf_is_refused(listed):
    before = rows()
    response = Client(enforce_csrf_checks=True).post(SUBMIT, {"email": SENDER, "ip": LISTED_IP})
    assert response.status_code == 403
    assert rows() == before


@pytest.mark.parametrize(
    "method, path",
    [
        ("put", "/"),
        ("delete", "/"),
        ("post", "/"),
        ("get", SUBMIT),
        ("put", SUBMIT),
        ("delete", "/confirm/"),
        ("patch", "/confirm/"),
        ("post", f"/confirm/{KEY}.{KEY}"),
        ("post", f"/status/{KEY}"),
        ("delete", f"/status/{KEY}"),
        ("post", f"/api/v1/ip/{LISTED_IP}"),
        ("delete", f"/api/v1/ip/{LISTED_IP}"),
        ("post", "/api/v1/export/plain"),
    ],
)
def test_a_wrong_method_is_a_405(client, listed, method, path):
    before = rows()
    assert getattr(client, method)(path).status_code == 405
    assert rows() == before


def test_an_oversized_body_is_a_400(client, listed):
    before = rows()
    body = "email=a%40mail.example.com&ip=" + "5" * (3 * 1024 * 1024)
    response = client.post(SUBMIT, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert rows() == before


def test_too_many_fields_is_a_400(client, listed):
    before = rows()
    body = "&".join(f"f{i}=x" for i in range(2000)) + f"&email={SENDER}&ip={LISTED_IP}"
    response = client.post(SUBMIT, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert rows() == before


@pytest.mark.parametrize(
    "host", ["evil.example.com", "127.0.0.1:8000@evil", "127.0.0.1\r\nX-Injected: 1", "a" * 300]
)
def test_a_host_header_we_do_not_serve_is_a_400(client, listed, host):
    before = rows()
    assert client.post(SUBMIT, {"email": SENDER, "ip": LISTED_IP}, HTTP_HOST=host).status_code == 400
    assert rows() == before


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("desk", "desk@example.org", "a long and right password")


@pytest.mark.parametrize(
    "username, password",
    [
        ("desk\x00", "a long and right password"),
        ("desk", "wrong"),
        ("x" * 5000, "x"),
        ("desk' OR '1'='1", "' OR '1'='1"),
        ("", ""),
        ("desk", "a long and right password\x00"),
    ],
    ids=["nul-user", "wrong-password", "huge-user", "sql", "empty", "nul-password"],
)
def test_a_hostile_admin_login_does_not_get_in_and_says_why(admin_user, username, password):
    browser = Client()
    before = rows()
    response = browser.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code in (200, 400, 403)
    html = response.content.decode()
    assert (
        "Please enter the correct username and password" in html or "errornote" in html or "errorlist" in html
    )
    assert "_auth_user_id" not in browser.session
    assert rows() == before


def test_an_admin_login_without_csrf_is_refused(admin_user):
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/admin/login/", {"username": "desk", "password": "a long and right password"})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session
