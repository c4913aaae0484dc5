"""With EXPORT_DIR set, the exports follow every change to the active set, and only then."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from blocklist.exports import exports_refresh_if_changed
from requests_app import services


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


def plain(export_dir) -> list[str]:
    return (export_dir / "blocklist.txt").read_text().split()


def test_an_admin_change_rewrites_the_exports_once_committed(
    admin_client, listed, export_dir, django_capture_on_commit_callbacks
):
    services.sweep()
    assert "5.61.14.7/32" in plain(export_dir)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(
            reverse("admin:blocklist_entry_changelist"),
            {"action": "delist", ACTION_CHECKBOX_NAME: [listed["single"].pk], "reason": "fixed"},
        )
    assert callbacks  # the refresh waits for the commit
    assert plain(export_dir) == ["37.120.8.0/24", "2a05:d018:1:2::/64"]
    assert sorted(p.name for p in export_dir.iterdir() if not p.name.startswith(".")) == [
        "blocklist.json",
        "blocklist.postfix.cidr",
        "blocklist.rbldnsd",
        "blocklist.txt",
    ]


def test_nothing_is_rewritten_when_nothing_changed(listed, export_dir, listing):
    assert len(exports_refresh_if_changed()) == 4
    assert exports_refresh_if_changed() == []
    services.sweep()
    assert exports_refresh_if_changed() == []
    listing("81.2.69.160")
    assert len(exports_refresh_if_changed()) == 4
    assert "81.2.69.160/32" in plain(export_dir)


def test_a_lost_file_is_written_again(listed, export_dir):
    exports_refresh_if_changed()
    (export_dir / "blocklist.json").unlink()
    assert len(exports_refresh_if_changed()) == 4


def test_without_export_dir_nothing_is_written(
    listed, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.EXPORT_DIR = None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.sweep()
    assert callbacks == [] and exports_refresh_if_changed() == []
