"""What the desk reads in the admin: counts in words, capitalised labels, times that name their
zone, breadcrumbs that say each thing once, and a code filter of the codes in use."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from blocklist.models import Event
from requests_app.models import State

QUEUE = reverse("admin:requests_app_reviewqueue_changelist")
ENTRIES = reverse("admin:blocklist_entry_changelist")


def in_review(confirmed, count: int) -> list:
    requests = [confirmed(f"37.120.8.{n + 10}") for n in range(count)]
    assert all(r.state == State.NEEDS_REVIEW for r in requests)
    return requests


def approve(client, requests):
    data = {"action": "approve", "confirm": "yes", ACTION_CHECKBOX_NAME: [r.pk for r in requests]}
    response = client.post(QUEUE, data, follow=True)
    return [str(m) for m in response.context["messages"]]


def text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def crumbs(page: str) -> list[str]:
    found = re.search(r'<div class="breadcrumbs">(.*?)</div>', page, re.S)
    assert found, "no breadcrumbs"
    return [part.strip() for part in text(found.group(1)).split("›")]


@pytest.mark.parametrize("count, message", [(1, "Approved 1 request."), (3, "Approved 3 requests.")])
def test_approving_counts_requests_in_the_right_plural(admin_client, confirmed, count, message):
    assert approve(admin_client, in_review(confirmed, count)) == [message]


def test_the_queue_counts_its_requests_in_words(admin_client, confirmed):
    requests = in_review(confirmed, 3)
    assert "3 requests in review" in text(admin_client.get(QUEUE).content.decode())
    approve(admin_client, requests[:2])
    assert "1 request in review" in text(admin_client.get(QUEUE).content.decode())


def test_a_refusal_reads_in_the_singular_for_one_request(client, confirmed, listing, django_user_model):
    from django.contrib.auth.models import Group

    listing("37.120.0.0/16")  # wide: only a superuser may approve it
    user = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="reviewer"))
    client.force_login(user)
    (message,) = approve(client, in_review(confirmed, 1))
    assert message.startswith("1 covers a range wider than /")
    assert "only a superuser may approve it, so it stays in review." in message


def test_the_queue_shows_why_and_the_covering_networks_with_their_sizes(admin_client, confirmed):
    (request,) = in_review(confirmed, 1)
    page = text(admin_client.get(QUEUE).content.decode())
    assert "37.120.8.0/24 (256 addresses)" in page
    assert "Why in review" in page and "Covering networks" in page
    why = request.events.get(action=Event.Action.SENT_TO_REVIEW).reason
    assert why and why in page


def test_the_queues_columns_and_the_reject_form_are_labelled_with_a_capital(admin_client, confirmed):
    request = in_review(confirmed, 1)[0]
    page = admin_client.get(QUEUE).content.decode()
    table = page.split('id="result_list"', 1)[1].split("</thead>", 1)[0]
    headers = [text(h).strip() for h in re.findall(r'<th scope="col".*?</th>', table, re.S)]
    headers = [h for h in headers if h]
    assert headers == ["IP address", "Email", "Waiting", "Confirmed at", "Why in review", "Covering networks"]
    form = admin_client.post(QUEUE, {"action": "reject", ACTION_CHECKBOX_NAME: [request.pk]})
    assert "Reason the sender will read:" in text(form.content.decode())


def test_times_in_the_queue_and_on_the_request_page_name_their_zone(admin_client, confirmed):
    request = in_review(confirmed, 1)[0]
    queue = text(admin_client.get(QUEUE).content.decode())
    assert f"{request.confirmed_at:%Y-%m-%d %H:%M} UTC" in queue
    page = admin_client.get(reverse("admin:requests_app_delistrequest_change", args=[request.pk]))
    shown = text(page.content.decode())
    assert f"Submitted at: {request.created_at:%Y-%m-%d %H:%M} UTC" in shown
    assert f"Confirmed at: {request.confirmed_at:%Y-%m-%d %H:%M} UTC" in shown
    assert f"{request.events.earliest('at').at:%Y-%m-%d %H:%M} UTC" in shown  # the timeline


def test_no_breadcrumb_names_the_same_thing_twice(admin_client, confirmed):
    request = in_review(confirmed, 1)[0]
    pages = {
        "dashboard": admin_client.get(reverse("admin:requests_app_dashboard")),
        "import": admin_client.get(reverse("admin:blocklist_entry_import")),
        "queue": admin_client.get(QUEUE),
        "requests": admin_client.get(reverse("admin:requests_app_delistrequest_changelist")),
        "request": admin_client.get(reverse("admin:requests_app_delistrequest_change", args=[request.pk])),
        "approve": admin_client.post(QUEUE, {"action": "approve", ACTION_CHECKBOX_NAME: [request.pk]}),
        "reject": admin_client.post(QUEUE, {"action": "reject", ACTION_CHECKBOX_NAME: [request.pk]}),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        trail = crumbs(response.content.decode())
        assert len(trail) == len(set(trail)), f"{name}: {trail}"
    assert crumbs(pages["approve"].content.decode()) == ["Home", "Review queue", "Approve delist requests"]
    assert crumbs(pages["reject"].content.decode()) == ["Home", "Review queue", "Reject delist requests"]
    assert crumbs(pages["dashboard"].content.decode()) == ["Home", "Dashboard"]


def test_the_code_filter_offers_only_the_codes_in_use(admin_client, listing):
    listing("5.61.14.7", code="5.7.606")
    listing("5.61.14.8", code="5.7.612")
    listing("5.61.14.9", code="5.7.612")
    page = admin_client.get(ENTRIES).content.decode()
    offered = sorted(set(re.findall(r"\?code=(5\.7\.6\d\d)", page)))
    assert offered == ["5.7.606", "5.7.612"]
    filtered = text(admin_client.get(ENTRIES, {"code": "5.7.612"}).content.decode())
    assert "5.61.14.8/32" in filtered and "5.61.14.9/32" in filtered and "5.61.14.7/32" not in filtered


def test_the_desk_reads_the_admin_in_swedish(admin_client, confirmed):
    in_review(confirmed, 3)
    sv = {"accept-language": "sv"}
    page = text(admin_client.get(QUEUE, headers=sv).content.decode())
    assert "3 begäranden under granskning" in page
    assert "Varför den granskas" in page and "37.120.8.0/24 (256 adresser)" in page
    index = text(admin_client.get(reverse("admin:index"), headers=sv).content.decode())
    assert "Granskningskö" in index and "Avlistning" in index
