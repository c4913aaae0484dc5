"""GET /api/v1/export/<format>: the exports for mail servers that hold the bearer token."""

from __future__ import annotations

import json

import pytest

from blocklist.exports import export_chunks
from tests.conftest import LISTED_IP, LISTED_RANGE

TOKEN = "s3cret-export-token"
URL = "/api/v1/export/{}"


@pytest.fixture
def export_on(settings):
    settings.EXPORT_TOKEN = TOKEN


def get(client, fmt, token=TOKEN, **extra):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(URL.format(fmt), headers=headers, **extra)


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("plain", "text/plain; charset=utf-8"),
        ("postfix", "text/plain; charset=utf-8"),
        ("rbldnsd", "text/plain; charset=utf-8"),
        ("json", "application/json"),
    ],
)
def test_it_streams_each_format_with_the_right_token(client, listed, export_on, fmt, content_type):
    response = get(client, fmt)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == content_type
    assert response["Cache-Control"] == "no-store"
    assert body(response) == "".join(export_chunks(fmt))


def test_the_json_export_lists_the_active_entries(client, listed, export_on):
    networks = [e["network"] for e in json.loads(body(get(client, "json")))]
    assert networks == [f"{LISTED_IP}/32", LISTED_RANGE, "2a05:d018:1:2::/64"]


def test_it_asks_for_a_token_when_none_is_sent(client, listed, export_on):
    response = get(client, "plain", token=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json()


def test_another_auth_scheme_counts_as_no_token(client, listed, export_on):
    response = client.get(URL.format("plain"), headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401


def test_it_refuses_a_wrong_token(client, listed, export_on):
    response = get(client, "plain", token="wrong")
    assert response.status_code == 403
    assert LISTED_IP not in response.content.decode()


def test_it_refuses_a_token_with_non_ascii_characters(client, listed, export_on):
    response = client.get(URL.format("plain"), HTTP_AUTHORIZATION="Bearer s3cret-\xe9")
    assert response.status_code == 403


def test_the_api_is_off_without_an_export_token(client, listed, settings):
    settings.EXPORT_TOKEN = None
    assert get(client, "plain").status_code == 404
    assert get(client, "plain", token="").status_code == 404


def test_an_unknown_format_is_not_found(client, listed, export_on):
    assert get(client, "bind").status_code == 404


def test_the_format_is_only_revealed_after_authentication(client, listed, export_on):
    assert get(client, "bind", token=None).status_code == 401
    assert get(client, "bind", token="wrong").status_code == 403


def test_it_only_answers_safe_methods(client, listed, export_on):
    response = client.post(URL.format("plain"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405


def test_head_answers_without_a_body(client, listed, export_on):
    response = client.head(URL.format("plain"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b""


def test_it_is_rate_limited(one_instant, client, listed, export_on, settings):
    settings.DELIST_API_RATE = "2/m"
    assert get(client, "plain").status_code == 200
    assert get(client, "plain").status_code == 200
    response = get(client, "plain")
    assert response.status_code == 429
    assert response.json()["error"].startswith("too many requests; try again in")
    assert 1 <= int(response["Retry-After"]) <= 60 and response.json()["retry_after"] == int(
        response["Retry-After"]
    )
