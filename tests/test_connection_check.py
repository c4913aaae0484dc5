"""A persistent PostgreSQL connection is checked before each request's first query without a
round trip (portal_lib.postgresql), and one that PostgreSQL ended is replaced."""

from __future__ import annotations

import time

import psycopg2
import pytest
from django.db import connections

from tests.test_submission_paths import postgres_only

pytestmark = [postgres_only, pytest.mark.django_db]


@pytest.fixture
def own_connection():
    """A connection of the test's own, outside the test's transaction, closed afterwards."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


@pytest.fixture
def observer(own_connection):
    """Another session, to see what the server got from the first one."""
    settings = own_connection.get_connection_params()
    other = psycopg2.connect(**settings)
    other.autocommit = True
    yield other
    other.close()


def last_statement(observer, pid: int) -> str:
    with observer.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0]


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_health_check_sends_the_server_nothing(own_connection, observer):
    assert own_connection.health_check_enabled  # CONN_HEALTH_CHECKS, as in production
    pid = backend_pid(own_connection)
    for _ in range(20):
        assert own_connection.is_usable()
    # The server's last statement from that session is still the one before the checks.
    assert last_statement(observer, pid) == "SELECT pg_backend_pid()"


def test_a_connection_postgresql_ended_is_replaced_before_the_next_query(own_connection, observer):
    pid = backend_pid(own_connection)
    with observer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while own_connection.is_usable():  # the server's last words take a moment to arrive
        assert time.monotonic() < deadline, "the ended connection still reads as usable"
        time.sleep(0.01)
    # What a request's start does (close_old_connections): the next query gets a new session.
    own_connection.close_if_unusable_or_obsolete()
    assert backend_pid(own_connection) != pid


def test_a_closed_connection_is_not_usable(own_connection):
    own_connection.connection.close()
    assert not own_connection.is_usable()
