"""The write API: a write key lists, delists and changes entries through the same services as
the admin, audited under the key's name; bad input is a 400 naming each field, never a 500."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from blocklist.api_keys import api_key_create
from blocklist.exports import export_chunks
from blocklist.models import Entry, Event
from tests.conftest import LISTED_IP

ENTRIES = reverse("blocklist:api_entries")
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def writer(db) -> str:
    return api_key_create(name="abuse-feed", scope="write")[1]


def post(client, url, body, key, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        url, data, content_type="application/json", headers={"Authorization": f"Bearer {key}"}, **extra
    )


def patch(client, url, body, key):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.patch(
        url, data, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
    )


def delist_url(entry_id) -> str:
    return reverse("blocklist:api_entry_delist", args=[entry_id])


def entry_url(entry_id) -> str:
    return reverse("blocklist:api_entry", args=[entry_id])


def test_a_write_key_lists_a_network_with_its_terms(client, writer):
    response = post(
        client,
        ENTRIES,
        {
            "network": "81.2.69.0/24",
            "reason": "snowshoe",
            "code": "5.7.610",
            "expires_at": "2030-07-01T00:00:00Z",
            "source": "traps",
            "self_service": False,
        },
        writer,
    )
    assert response.status_code == 201
    entry = Entry.objects.get(network="81.2.69.0/24")
    assert response.json() == {
        "id": entry.pk,
        "network": "81.2.69.0/24",
        "code": "5.7.610",
        "reason": "snowshoe",
        "listed_at": NOW.isoformat(),
        "expires_at": "2030-07-01T00:00:00+00:00",
        "source": "traps",
        "self_service": False,
        "delisted_at": None,
    }
    event = Event.objects.get(entry=entry)
    assert (event.action, event.actor, event.reason) == ("listed", "abuse-feed", "snowshoe")
    assert "81.2.69.0/24" in "".join(export_chunks("plain"))


def test_only_the_network_is_required_and_a_bare_address_is_a_slash_32(client, writer):
    response = post(client, ENTRIES, {"network": "81.2.69.160"}, writer)
    assert response.status_code == 201
    body = response.json()
    assert (body["network"], body["code"], body["reason"], body["expires_at"], body["self_service"]) == (
        "81.2.69.160/32",
        "5.7.606",
        "",
        None,
        True,
    )


def test_listing_a_live_network_again_answers_200_with_the_entry_it_has(client, writer):
    first = post(client, ENTRIES, {"network": "81.2.69.0/24", "reason": "first"}, writer).json()
    again = post(client, ENTRIES, {"network": "81.2.69.0/24", "reason": "second"}, writer)
    assert again.status_code == 200
    assert again.json() == first
    assert Entry.objects.filter(network="81.2.69.0/24").count() == 1
    assert Event.objects.filter(entry_id=first["id"]).count() == 1


def test_a_delisted_network_listed_again_is_a_new_entry(client, writer):
    first = post(client, ENTRIES, {"network": "81.2.69.0/24"}, writer).json()
    post(client, delist_url(first["id"]), {"reason": "cleaned up"}, writer)
    again = post(client, ENTRIES, {"network": "81.2.69.0/24"}, writer)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
    assert Event.objects.get(entry_id=again.json()["id"]).action == "relisted"


def test_delisting_stamps_the_entry_and_audits_the_key(client, writer, listed):
    entry = listed["single"]
    response = post(client, delist_url(entry.pk), {"reason": "owner fixed the relay"}, writer)
    assert response.status_code == 200
    assert response.json()["delisted_at"] == NOW.isoformat()
    entry.refresh_from_db()
    assert (entry.delisted_at, entry.delisted_by) == (NOW, "abuse-feed")
    event = Event.objects.get(entry=entry, action="delisted")
    assert (event.actor, event.reason) == ("abuse-feed", "owner fixed the relay")
    assert f"{LISTED_IP}/32" not in "".join(export_chunks("plain"))


def test_delisting_twice_answers_the_entry_as_it_is(client, writer, listed):
    url = delist_url(listed["single"].pk)
    first = post(client, url, {"reason": "fixed"}, writer).json()
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        again = post(client, url, {"reason": "again"}, writer)
    assert again.status_code == 200
    assert again.json() == first
    assert Event.objects.filter(entry=listed["single"], action="delisted").count() == 1


def test_a_delisting_needs_a_reason(client, writer, listed):
    url = delist_url(listed["single"].pk)
    for body in ({}, {"reason": "   "}, {"reason": 5}, {"reason": "x" * 1001}):
        response = post(client, url, body, writer)
        assert response.status_code == 400, body
        assert "reason" in response.json()["fields"]
    assert Entry.objects.get(pk=listed["single"].pk).delisted_at is None


def test_patch_changes_the_public_terms_and_audits_them(client, writer, listed):
    entry = listed["range"]
    response = patch(client, entry_url(entry.pk), {"reason": "snowshoe, still", "self_service": True}, writer)
    assert response.status_code == 200
    assert response.json()["reason"] == "snowshoe, still"
    entry.refresh_from_db()
    assert entry.reason == "snowshoe, still"
    event = Event.objects.get(entry=entry, action="updated")
    assert (event.actor, event.reason) == ("abuse-feed", "reason")


def test_patch_can_clear_an_expiry(client, writer, listing):
    entry = listing("81.2.69.0/24", expires_at=NOW + timedelta(days=1))
    response = patch(client, entry_url(entry.pk), {"expires_at": None}, writer)
    assert response.status_code == 200 and response.json()["expires_at"] is None


def test_patch_refuses_a_delisted_entry_and_what_is_not_a_term(client, writer, listed):
    entry = listed["single"]
    assert patch(client, entry_url(entry.pk), {"network": "81.2.69.0/24"}, writer).status_code == 400
    assert patch(client, entry_url(entry.pk), {}, writer).status_code == 400
    post(client, delist_url(entry.pk), {"reason": "fixed"}, writer)
    assert patch(client, entry_url(entry.pk), {"reason": "x"}, writer).status_code == 409


@pytest.mark.parametrize("entry_id", [999999, 2**63, 10**30, "-1", "+5", "05", "x", "1.0"])
def test_an_unknown_entry_is_404(client, writer, entry_id):
    assert post(client, delist_url(entry_id), {"reason": "x"}, writer).status_code == 404
    assert patch(client, entry_url(entry_id), {"reason": "x"}, writer).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"network": "10.0.0.0/8"}, "network"),
        ({"network": "192.0.2.1"}, "network"),
        ({"network": "81.2.69.1/24"}, "network"),
        ({"network": "not a network"}, "network"),
        ({"network": 81}, "network"),
        ({"network": ["81.2.69.0/24"]}, "network"),
        ({"network": "81.2.69.0/24\x00"}, "network"),
        ({"reason": "no network"}, "network"),
        ({"network": "81.2.69.0/24", "code": "5.7.1"}, "code"),
        ({"network": "81.2.69.0/24", "code": 5}, "code"),
        ({"network": "81.2.69.0/24", "reason": "x" * 501}, "reason"),
        ({"network": "81.2.69.0/24", "reason": "nul\x00byte"}, "reason"),
        ({"network": "81.2.69.0/24", "reason": "\ud800"}, "reason"),
        ({"network": "81.2.69.0/24", "source": "s" * 101}, "source"),
        ({"network": "81.2.69.0/24", "source": None}, "source"),
        ({"network": "81.2.69.0/24", "self_service": "yes"}, "self_service"),
        ({"network": "81.2.69.0/24", "self_service": 1}, "self_service"),
        ({"network": "81.2.69.0/24", "expires_at": "tomorrow"}, "expires_at"),
        ({"network": "81.2.69.0/24", "expires_at": "2030-02-30"}, "expires_at"),
        ({"network": "81.2.69.0/24", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"network": "81.2.69.0/24", "expires_at": 1893456000}, "expires_at"),
        ({"network": "81.2.69.0/24", "expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
        ({"network": "81.2.69.0/24", "listed_at": "2030-01-01"}, "listed_at"),
    ],
)
def test_bad_fields_are_a_400_naming_the_field_and_list_nothing(client, writer, body, field):
    response = post(client, ENTRIES, body, writer)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert response.json()["error"]
    assert not Entry.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "[]",
        '"network"',
        "null",
        '{"network": NaN}',
        "[" * 5000 + "]" * 5000,
        b"\xff\xfe{}",
        json.dumps({"network": "81.2.69.0/24", "reason": "x" * 20000}),
    ],
)
def test_a_body_that_is_no_small_json_object_is_a_400(client, writer, raw):
    response = post(client, ENTRIES, raw, writer)
    assert response.status_code == 400
    assert response.json()["error"]
    assert not Entry.objects.exists()


def test_only_post_lists(client, writer):
    response = client.get(ENTRIES, headers={"Authorization": f"Bearer {writer}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_writes_need_no_csrf_token(writer, listed):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert post(strict, ENTRIES, {"network": "81.2.69.0/24"}, writer).status_code == 201
    assert post(strict, delist_url(listed["single"].pk), {"reason": "x"}, writer).status_code == 200
    assert patch(strict, entry_url(listed["range"].pk), {"reason": "y"}, writer).status_code == 200


def test_a_write_rewrites_the_exports(client, writer, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.EXPORT_DIR = str(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, ENTRIES, {"network": "81.2.69.0/24"}, writer)
    assert "81.2.69.0/24" in (tmp_path / "blocklist.txt").read_text()
