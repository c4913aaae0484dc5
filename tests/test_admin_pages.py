"""The admin shows listings and requests (their history and owed mail) without errors."""

from django.urls import reverse

from requests_app.models import DelistRequest


def test_an_admin_sees_entries_and_requests(admin_client, listed, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": "a@mail.example.com", "ip": "5.61.14.7"})
    request = DelistRequest.objects.get()

    entries = admin_client.get(reverse("admin:blocklist_entry_changelist"), {"q": "37.120.8"})
    assert entries.status_code == 200 and "37.120.8.0/24" in entries.content.decode()
    page = admin_client.get(reverse("admin:requests_app_delistrequest_change", args=[request.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "a@mail.example.com" in html and "confirmation link" in html
    # Requests are made by senders, not typed in by admins.
    assert admin_client.get(reverse("admin:requests_app_delistrequest_add")).status_code == 403
