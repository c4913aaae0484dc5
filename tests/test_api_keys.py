"""API keys: made and revoked by manage.py api_key and the admin, and every call authenticated,
limited and counted through them."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from blocklist.api_keys import USAGE_FLUSH_SECONDS, ApiKeyError, api_key_create, api_key_revoke
from blocklist.models import ApiKey

CHANGES = reverse("blocklist:api_changes")
ENTRIES = reverse("blocklist:api_entries")


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def api_key(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command("api_key", command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_prints_a_key_once_and_stores_only_its_hash(db):
    key = api_key("create", "rspamd-feed", "--scope", "read").strip()
    stored = ApiKey.objects.get(name="rspamd-feed")
    assert key.startswith("dlk_") and len(key) >= 40
    assert stored.scope == "read"
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {getattr(stored, f.attname) for f in ApiKey._meta.fields}
    assert stored.prefix == key[:12]


def test_list_shows_each_key_without_its_secret(db):
    key = api_key("create", "feed", "--scope", "read").strip()
    api_key("create", "writer", "--scope", "write")
    api_key("revoke", "writer")
    listing = api_key("list")
    assert key not in listing
    feed, writer = listing.splitlines()
    assert feed.startswith("feed\tread\t") and "last used never" in feed and feed.endswith("live")
    assert writer.startswith("writer\twrite\t") and "\trevoked " in writer


def test_revoke_answers_for_a_key_revoked_already_and_refuses_an_unknown_one(db):
    api_key("create", "feed", "--scope", "read")
    assert api_key("revoke", "feed") == "revoked feed\n"
    assert api_key("revoke", "feed") == "feed was revoked already\n"
    with pytest.raises(CommandError, match="no key named 'nobody'"):
        api_key("revoke", "nobody")


@pytest.mark.parametrize(
    ("name", "problem"),
    [("Feed", "not a key name"), ("a b", "not a key name"), ("", "not a key name"), ("worker", "reserved")],
)
def test_names_are_plain_and_never_pose_as_another_actor(db, name, problem):
    with pytest.raises(CommandError, match=problem):
        api_key("create", name, "--scope", "read")


def test_a_name_is_never_reused(db):
    api_key_create(name="feed", scope="read")
    api_key_revoke(name="feed")
    with pytest.raises(ApiKeyError, match="exists already"):
        api_key_create(name="feed", scope="write")


def test_the_scope_must_be_read_or_write(db):
    with pytest.raises(CommandError):
        api_key("create", "feed", "--scope", "admin")


def test_a_call_without_a_key_or_with_an_unknown_one_is_401(client, db):
    assert client.get(CHANGES).status_code == 401
    assert client.get(CHANGES)["WWW-Authenticate"].startswith("Bearer")
    assert client.get(CHANGES, headers=bearer("dlk_" + "x" * 43)).status_code == 401
    assert client.get(CHANGES, headers=bearer("not-even-a-key")).status_code == 401
    assert client.get(CHANGES, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get(CHANGES, HTTP_AUTHORIZATION="Bearer dlk_\xe9").status_code == 401


def test_a_revoked_key_is_401_from_its_next_call(client, db):
    _key, secret = api_key_create(name="feed", scope="read")
    assert client.get(CHANGES, headers=bearer(secret)).status_code == 200
    api_key_revoke(name="feed")
    response = client.get(CHANGES, headers=bearer(secret))
    assert response.status_code == 401
    assert response.json()["error"] == "unknown or revoked key"


def test_a_read_key_cannot_write(client, db):
    _key, secret = api_key_create(name="feed", scope="read")
    response = client.post(
        ENTRIES, {"network": "81.2.69.0/24"}, content_type="application/json", headers=bearer(secret)
    )
    assert response.status_code == 403
    assert response.json() == {"error": "this key may only read"}


def test_the_export_token_is_a_read_key(client, db, settings):
    settings.EXPORT_TOKEN = "s3cret-export-token"
    assert client.get(CHANGES, headers=bearer("s3cret-export-token")).status_code == 200
    write = client.post(
        ENTRIES,
        {"network": "81.2.69.0/24"},
        content_type="application/json",
        headers=bearer("s3cret-export-token"),
    )
    assert write.status_code == 403


def test_an_api_key_downloads_the_exports_too(client, listed, settings):
    settings.EXPORT_TOKEN = None
    _key, secret = api_key_create(name="feed", scope="read")
    response = client.get(reverse("blocklist:api_export", args=["plain"]), headers=bearer(secret))
    assert response.status_code == 200
    assert "5.61.14.7/32" in b"".join(response.streaming_content).decode()


def test_each_key_has_its_own_rate_limit_with_retry_after(one_instant, client, db, settings):
    settings.DELIST_API_KEY_RATE = "2/m"
    settings.DELIST_API_RATE = "1/m"  # per address: keyed calls do not count against it
    _one, first = api_key_create(name="one", scope="read")
    _two, second = api_key_create(name="two", scope="read")
    assert client.get(CHANGES, headers=bearer(first)).status_code == 200
    assert client.get(CHANGES, headers=bearer(first)).status_code == 200
    limited = client.get(CHANGES, headers=bearer(first))
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["retry_after"] == int(limited["Retry-After"])
    assert client.get(CHANGES, headers=bearer(second)).status_code == 200


def test_calls_without_a_valid_key_count_against_the_client_address(one_instant, client, db, settings):
    settings.DELIST_API_RATE = "2/m"
    assert client.get(CHANGES, headers=bearer("dlk_guess1")).status_code == 401
    assert client.get(CHANGES, headers=bearer("dlk_guess2")).status_code == 401
    assert client.get(CHANGES, headers=bearer("dlk_guess3")).status_code == 429


def test_use_is_written_at_most_once_a_minute_and_every_call_is_counted(
    client, db, django_assert_num_queries
):
    key, secret = api_key_create(name="feed", scope="read")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert client.get(CHANGES, headers=bearer(secret)).status_code == 200
        key.refresh_from_db()
        assert (key.last_used_at, key.request_count) == (start, 1)
        cursor = b"".join(client.get(CHANGES, headers=bearer(secret)).streaming_content).decode()
        poll = CHANGES + "?cursor=" + json.loads(cursor)["cursor"]
        # Within the minute a call reads its key and does its own work: no write.
        with django_assert_num_queries(2):
            assert client.get(poll, headers=bearer(secret)).status_code == 200
    key.refresh_from_db()
    assert (key.last_used_at, key.request_count) == (start, 1)
    later = start + timedelta(seconds=USAGE_FLUSH_SECONDS + 1)
    with time_machine.travel(later, tick=False):
        client.get(CHANGES, headers=bearer(secret))
    key.refresh_from_db()
    assert (key.last_used_at, key.request_count) == (later, 4)


def test_the_admin_lists_keys_and_revokes_them_without_showing_a_hash(admin_client, db):
    key, secret = api_key_create(name="feed", scope="write")
    changelist = reverse("admin:blocklist_apikey_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "feed" in page and key.prefix in page
    assert key.key_hash not in page and secret not in page
    detail = admin_client.get(reverse("admin:blocklist_apikey_change", args=[key.pk])).content.decode()
    assert key.key_hash not in detail and 'name="key_hash"' not in detail
    assert admin_client.get(reverse("admin:blocklist_apikey_add")).status_code == 403
    admin_client.post(changelist, {"action": "revoke", ACTION_CHECKBOX_NAME: [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
