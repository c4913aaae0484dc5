"""The desk's lists cost the same few queries whatever the size of the table (issue 10): no
exact COUNT over everything, no SELECT DISTINCT for a filter, no date_hierarchy."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from blocklist.models import Entry, Event
from portal_lib import big_lists
from portal_lib.big_lists import EstimatedCountPaginator, distinct_values
from requests_app.models import DelistRequest, State

LISTS = {
    # url name: queries for the whole page, the session and the user included
    # ... the codes in use (the code filter) and the sources in use, each along its index
    "admin:blocklist_entry_changelist": 6,
    "admin:blocklist_event_changelist": 5,
    "admin:requests_app_delistrequest_changelist": 4,
    "admin:requests_app_reviewqueue_changelist": 5,  # ... every row's networks, in one query
    "admin:requests_app_mail_changelist": 4,
}


@pytest.fixture
def desk_data(listed, listing):
    for n in range(3):
        listing(f"5.61.15.{n}", source=f"trap-{n % 2}")
    for state in (State.PENDING, State.NEEDS_REVIEW, State.COMPLETED):
        DelistRequest.objects.create(email="postmaster@mail.example.com", ip="5.61.14.7", state=state)


@pytest.mark.parametrize("url, queries", LISTS.items())
def test_each_list_costs_a_fixed_number_of_queries(
    admin_client, desk_data, django_assert_num_queries, url, queries
):
    with django_assert_num_queries(queries) as captured:
        response = admin_client.get(reverse(url))
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in captured.captured_queries).upper()
    # What grows with the table: a DISTINCT over it, a count of all of it beside the filtered one.
    assert "DISTINCT" not in sql
    assert "django_datetime_trunc" not in sql.lower() and "DATE_TRUNC" not in sql


def test_a_bigger_table_costs_no_more_queries(admin_client, desk_data, listing, django_assert_num_queries):
    url = reverse("admin:blocklist_entry_changelist")
    for n in range(30):
        listing(f"5.61.16.{n}", source=f"feed-{n % 5}")
    with django_assert_num_queries(LISTS["admin:blocklist_entry_changelist"]):
        assert admin_client.get(url).status_code == 200


def test_the_source_filter_offers_every_source_once_and_filters(admin_client, desk_data):
    url = reverse("admin:blocklist_entry_changelist")
    html = admin_client.get(url).content.decode()
    assert html.count("?source=trap-0") == 1 and html.count("?source=trap-1") == 1
    filtered = admin_client.get(url, {"source": "trap-1"}).content.decode()
    assert "5.61.15.1/32" in filtered and "5.61.15.0/32" not in filtered


def test_distinct_values_read_along_the_index_in_order(listing):
    for source in ["b", "a", "c", "a", "", "b"]:
        listing(f"5.61.17.{len(Entry.objects.all())}", source=source)
    assert distinct_values(Entry, "source") == ["", "a", "b", "c"]
    assert distinct_values(Entry, "source", limit=2) == ["", "a"]
    assert distinct_values(Event, "actor") == ["admin"]


def test_counts_are_exact_up_to_the_bound(listing, monkeypatch):
    for n in range(4):
        listing(f"5.61.18.{n}")
    monkeypatch.setattr(big_lists, "EXACT_COUNT_UP_TO", 10)
    assert EstimatedCountPaginator(Entry.objects.all(), 2).count == 4


def test_beyond_the_bound_postgresql_estimates(listing, monkeypatch):
    for n in range(8):
        listing(f"5.61.19.{n}")
    monkeypatch.setattr(big_lists, "EXACT_COUNT_UP_TO", 5)
    paginator = EstimatedCountPaginator(Entry.objects.order_by("-listed_at"), 2)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE blocklist_entry")
        # The planner's figure, never less than what the bounded count already saw.
        assert paginator.count == max(6, big_lists.planner_rows(Entry.objects.all()))
        assert paginator.count >= 6
    else:
        assert paginator.count == 8
