"""Export downloads carry an ETag from the list's version: a mail server that holds the
current list gets 304 and no body, and any change to the active set gives a new ETag."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from blocklist.services import entries_delist
from tests.test_export_api import TOKEN, body, get


@pytest.fixture(autouse=True)
def export_on(settings):
    settings.EXPORT_TOKEN = TOKEN


def test_an_unchanged_list_is_a_304_without_a_body(client, listed, django_assert_max_num_queries):
    first = get(client, "rbldnsd")
    etag = first["ETag"]
    assert etag.startswith('"rbldnsd-') and body(first)
    with django_assert_max_num_queries(1):
        again = get(client, "rbldnsd", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag


def test_each_format_has_its_own_etag(client, listed):
    assert get(client, "plain")["ETag"] != get(client, "json")["ETag"]


def test_a_change_to_the_list_changes_the_etag(client, listed, listing):
    etag = get(client, "plain")["ETag"]
    listing("81.2.69.0/24")
    changed = get(client, "plain", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert "81.2.69.0/24" in body(changed)
    newer = changed["ETag"]
    entries_delist([listed["single"].pk], actor="admin", reason="fixed")
    assert get(client, "plain", HTTP_IF_NONE_MATCH=newer).status_code == 200


def test_an_entry_passing_its_expiry_changes_the_etag_before_any_sweep(client, listed, listing):
    listing("81.2.69.0/24", expires_at=timezone.now() + timedelta(hours=1))
    etag = get(client, "plain")["ETag"]
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        later = get(client, "plain", HTTP_IF_NONE_MATCH=etag)
        assert later.status_code == 200
        assert "81.2.69.0/24" not in body(later)


def test_head_carries_the_etag_too(client, listed):
    etag = get(client, "plain")["ETag"]
    head = client.head("/api/v1/export/plain", headers={"Authorization": f"Bearer {TOKEN}"})
    assert head["ETag"] == etag
