"""Listings in the admin: find what covers an IP, add, delist with a reason, relist, import."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from blocklist.models import Entry, Event
from tests.conftest import admin_post_data

CHANGELIST = reverse("admin:blocklist_entry_changelist")


def networks_listed(response) -> set[str]:
    return {str(e) for e in response.context["cl"].result_list}


def test_searching_an_ip_finds_every_entry_that_covers_it(admin_client, listed, listing):
    listing("37.120.0.0/16")
    response = admin_client.get(CHANGELIST, {"q": "37.120.8.9"})
    assert networks_listed(response) == {"37.120.8.0/24", "37.120.0.0/16"}
    assert networks_listed(admin_client.get(CHANGELIST, {"q": "snowshoe"})) == {"37.120.8.0/24"}
    assert networks_listed(admin_client.get(CHANGELIST, {"q": "2a05:d018:1:2::"})) == {"2a05:d018:1:2::/64"}


def test_the_status_filter_tells_active_delisted_and_expired_apart(admin_client, listed, listing):
    listing("81.2.69.161", expires_at=timezone.now() - timedelta(hours=1))
    admin_client.post(
        CHANGELIST,
        {"action": "delist", ACTION_CHECKBOX_NAME: [listed["single"].pk], "reason": "fixed"},
    )
    assert networks_listed(admin_client.get(CHANGELIST, {"status": "active"})) == {
        "37.120.8.0/24",
        "2a05:d018:1:2::/64",
    }
    assert networks_listed(admin_client.get(CHANGELIST, {"status": "delisted"})) == {"5.61.14.7/32"}
    assert networks_listed(admin_client.get(CHANGELIST, {"status": "expired"})) == {"81.2.69.161/32"}


@pytest.mark.parametrize(
    ("typed", "stored"), [("81.2.69.160", "81.2.69.160/32"), ("81.2.69.0/24", "81.2.69.0/24")]
)
def test_an_admin_adds_a_single_address_or_a_range(admin_client, admin_user, db, typed, stored):
    response = admin_client.post(
        reverse("admin:blocklist_entry_add"),
        {"network": typed, "code": "5.7.610", "reason": "open relay", "source": "desk", "self_service": "on"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = Entry.objects.get()
    assert (entry.network, entry.code, entry.reason) == (stored, "5.7.610", "open relay")
    event = entry.events.get()
    assert (event.action, event.actor) == ("listed", admin_user.username)


def test_adding_a_private_address_is_refused_with_a_message(admin_client, db):
    response = admin_client.post(
        reverse("admin:blocklist_entry_add"), {"network": "192.168.0.0/16", "code": "5.7.606"}
    )
    assert response.status_code == 200
    assert "not a public network" in response.content.decode()
    assert Entry.objects.count() == 0


def test_delisting_asks_for_a_reason_and_records_it(admin_client, admin_user, listed):
    ids = [listed["single"].pk, listed["range"].pk]
    ask = admin_client.post(CHANGELIST, {"action": "delist", ACTION_CHECKBOX_NAME: ids})
    assert ask.status_code == 200 and "reason" in ask.content.decode()
    assert Entry.objects.active().count() == 3  # nothing happened yet

    done = admin_client.post(
        CHANGELIST, {"action": "delist", ACTION_CHECKBOX_NAME: ids, "reason": "cleaned up"}
    )
    assert done.status_code == 302
    assert Entry.objects.active().count() == 1
    events = Event.objects.filter(action="delisted")
    assert {(e.entry_id, e.actor, e.reason) for e in events} == {
        (i, admin_user.username, "cleaned up") for i in ids
    }


def test_relisting_makes_a_new_entry_and_keeps_the_old_one(admin_client, listed):
    old = listed["single"]
    admin_client.post(CHANGELIST, {"action": "delist", ACTION_CHECKBOX_NAME: [old.pk], "reason": "x"})
    admin_client.post(CHANGELIST, {"action": "relist", ACTION_CHECKBOX_NAME: [old.pk]})
    entries = Entry.objects.filter(network="5.61.14.7/32").order_by("listed_at")
    assert len(entries) == 2
    assert entries[0].delisted_at is not None and entries[1].delisted_at is None
    assert entries[1].reason == old.reason
    assert entries[1].events.get().action == "relisted"


def test_an_entry_page_shows_its_history(admin_client, listed):
    entry = listed["single"]
    admin_client.post(
        CHANGELIST, {"action": "delist", ACTION_CHECKBOX_NAME: [entry.pk], "reason": "fixed it"}
    )
    html = admin_client.get(reverse("admin:blocklist_entry_change", args=[entry.pk])).content.decode()
    assert "listed" in html and "delisted" in html and "fixed it" in html


def test_editing_an_entry_changes_its_terms_and_says_so_in_its_history(admin_client, listed):
    entry = listed["single"]
    url = reverse("admin:blocklist_entry_change", args=[entry.pk])
    data = admin_post_data(admin_client.get(url), code="5.7.620", reason="new reason", network="1.1.1.1")
    response = admin_client.post(url, data)
    assert response.status_code == 302
    entry.refresh_from_db()
    assert (entry.network, entry.code, entry.self_service) == ("5.61.14.7/32", "5.7.620", False)
    assert entry.events.filter(action="updated").exists()


def test_the_upload_page_imports_and_lists_bad_lines(admin_client, db, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("feed.txt", b"5.61.14.7\n10.0.0.1\n37.120.8.0/24\n")
    with django_capture_on_commit_callbacks(execute=True):  # the worker's task runs here
        response = admin_client.post(
            reverse("admin:blocklist_entry_import"), {"file": upload, "source": "upload"}
        )
    assert response.status_code == 302
    html = admin_client.get(response["Location"]).content.decode()
    assert "added 2, unchanged 0, relisted 0, updated 0, rejected 1" in html
    assert "10.0.0.1" in html and "not a public address" in html
    assert set(Entry.objects.values_list("source", flat=True)) == {"upload"}


def test_nobody_deletes_entries_or_edits_the_audit_trail(admin_client, listed):
    entry = listed["single"]
    assert (
        admin_client.post(
            reverse("admin:blocklist_entry_delete", args=[entry.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    event = entry.events.get()
    assert admin_client.get(reverse("admin:blocklist_event_changelist")).status_code == 200
    assert (
        admin_client.post(
            reverse("admin:blocklist_event_change", args=[event.pk]), {"reason": "x"}
        ).status_code
        == 403
    )
    assert (
        admin_client.post(
            reverse("admin:blocklist_event_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert admin_client.get(reverse("admin:blocklist_event_add")).status_code == 403
    assert (
        Entry.objects.filter(pk=entry.pk).exists() and event.reason == Event.objects.get(pk=event.pk).reason
    )


def desk_client(client, *codenames: str):
    """Logged in as staff holding exactly these entry permissions."""
    user = User.objects.create_user("desk", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="blocklist", codename__in=codenames)
    )
    client.force_login(user)
    return client


def test_a_user_who_may_only_view_and_add_entries_cannot_import(client, db):
    desk = desk_client(client, "view_entry", "add_entry")
    url = reverse("admin:blocklist_entry_import")
    assert desk.get(url).status_code == 403
    upload = SimpleUploadedFile("feed.txt", b"5.61.14.7\n")
    assert desk.post(url, {"file": upload, "source": "upload"}).status_code == 403
    assert not Entry.objects.exists()
    assert url not in desk.get(CHANGELIST).content.decode()  # the link is not offered either


def test_a_user_who_may_add_and_change_entries_can_import(client, db, django_capture_on_commit_callbacks):
    desk = desk_client(client, "view_entry", "add_entry", "change_entry")
    assert reverse("admin:blocklist_entry_import") in desk.get(CHANGELIST).content.decode()
    upload = SimpleUploadedFile("feed.txt", b"5.61.14.7\n")
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(reverse("admin:blocklist_entry_import"), {"file": upload, "source": "upload"})
    assert response.status_code == 302
    assert Entry.objects.get().network == "5.61.14.7/32"


def test_a_user_without_the_add_permission_cannot_relist(client, listed):
    desk = desk_client(client, "view_entry", "change_entry")
    old = listed["single"]
    desk.post(CHANGELIST, {"action": "delist", ACTION_CHECKBOX_NAME: [old.pk], "reason": "fixed"})
    desk.post(CHANGELIST, {"action": "relist", ACTION_CHECKBOX_NAME: [old.pk]})
    assert Entry.objects.filter(network="5.61.14.7/32").count() == 1  # delisted, and no new entry
    assert not Entry.objects.get(pk=old.pk).is_active()
