"""What a page or an API call costs the database, pinned: a new query on these paths is a
decision, not an accident. The counts hold on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from blocklist.ip import parse_ip
from blocklist.services import entries_covering, lookup
from requests_app.models import DelistRequest, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, SENDER, UNLISTED_IP

LISTED_V6_IP = "2a05:d018:1:2::abcd"


@pytest.mark.parametrize("ip", [LISTED_IP, IN_RANGE_IP, LISTED_V6_IP, UNLISTED_IP])
def test_a_lookup_is_one_query(listed, django_assert_num_queries, ip):
    with django_assert_num_queries(1):
        list(entries_covering(parse_ip(ip)))
    with django_assert_num_queries(1):
        lookup(parse_ip(ip))


@pytest.mark.parametrize("ip", [LISTED_IP, LISTED_V6_IP, UNLISTED_IP])
def test_the_api_answers_with_one_query_and_leaves_no_cookie(client, listed, django_assert_num_queries, ip):
    # Through every middleware: none of them may read the session, the user or the database.
    with django_assert_num_queries(1):
        response = client.get(reverse("blocklist:api_ip", args=[ip]))
    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_an_invalid_ip_in_the_api_costs_no_query(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get(reverse("blocklist:api_ip", args=["not-an-ip"])).status_code == 400


def test_a_304_costs_the_same_one_query(client, listed, django_assert_num_queries):
    url = reverse("blocklist:api_ip", args=[LISTED_IP])
    etag = client.get(url)["ETag"]
    with django_assert_num_queries(1):
        assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304


@pytest.mark.parametrize(
    "ip, queries",
    [
        # The lookup, and the self-service count the review policy asks for a single address.
        (LISTED_IP, 2),
        # A range goes to review whatever the count: the policy does not ask.
        (IN_RANGE_IP, 1),
        (UNLISTED_IP, 1),
    ],
)
def test_the_start_page_with_a_lookup(client, listed, django_assert_num_queries, ip, queries):
    with django_assert_num_queries(queries):
        assert client.get(reverse("requests:home"), {"ip": ip}).status_code == 200


def test_the_start_page_alone_costs_no_query(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get(reverse("requests:home")).status_code == 200


@pytest.mark.parametrize(
    "state, queries",
    [
        # Who will delist it and where it stands on the ladder: the lookup and the
        # self-service count (requests_app/outlook.py).
        (State.PENDING, 3),
        (State.NEEDS_REVIEW, 3),
        # Decided: only the ladder's count.
        (State.APPROVED, 2),
        # What it delisted, and whether another entry still covers the IP (the
        # propagation comes in the request's own query).
        (State.COMPLETED, 3),
        # The audit trail tells a revoked approval from a rejection: one more query.
        (State.REJECTED, 2),
        (State.EXPIRED, 1),
        (State.SUPERSEDED, 1),
        (State.CANCELLED, 1),
        (State.WITHDRAWN, 1),
        # The request it joined comes in the same query.
        (State.MERGED, 1),
    ],
)
def test_the_status_page(client, listed, django_assert_num_queries, state, queries):
    now = timezone.now()
    request = DelistRequest.objects.create(
        email=SENDER,
        ip=LISTED_IP,
        state=state,
        confirmed_at=now,
        decided_at=now,
        effective_at=now + timedelta(minutes=5),
        completed_at=now,
        closed_at=now,
    )
    with django_assert_num_queries(queries):
        assert client.get(reverse("requests:status", args=[request.status_key])).status_code == 200
