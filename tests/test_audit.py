"""Every change of state of an entry or a request leaves an event: when, who, what, why."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from blocklist.models import Event
from requests_app import services
from tests.conftest import LISTED_IP, SENDER, confirmation_link, link_path, press_delist_button


def trail(**subject) -> list[tuple[str, str]]:
    return list(Event.objects.filter(**subject).order_by("at", "id").values_list("action", "actor"))


def test_a_self_service_delisting_leaves_a_complete_trail(
    client, listed, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 0
    for _ in range(2):  # the second submission supersedes the first
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])))
        services.sweep()

    first, second = (e.request for e in Event.objects.filter(action="submitted").order_by("id"))
    assert trail(request=first) == [("submitted", "sender"), ("superseded", "sender")]
    assert trail(request=second) == [
        ("submitted", "sender"),
        ("confirmed", "sender"),
        ("approved", "self-service"),
        ("delisted", "worker"),
        ("completed", "worker"),
    ]
    assert trail(entry=listed["single"]) == [("listed", "admin"), ("delisted", "worker")]


def test_the_sweep_records_expired_requests_and_entries(client, listing, django_capture_on_commit_callbacks):
    soon = listing("81.2.69.160", expires_at=timezone.now() + timedelta(minutes=5))
    listing(LISTED_IP)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    request = Event.objects.get(action="submitted").request
    request.refresh_from_db()

    result = services.sweep(now=request.token_expires_at + timedelta(minutes=5))
    assert result.requests_expired == 1 and result.entries_expired == 1
    assert trail(request=request)[-1] == ("expired", "worker")
    assert trail(entry=soon) == [("listed", "admin"), ("entry_expired", "worker")]
    soon.refresh_from_db()
    assert soon.delisted_by == "expiry"
