"""Hot statements are planned once per PostgreSQL connection (portal_lib.prepared), prepared
again where the session lost them, and the portal ceiling's statement is one of them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from blocklist.ip import parse_ip
from portal_lib import prepared
from requests_app import services
from tests.conftest import LISTED_IP, SENDER

postgres_only = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="PREPARE is PostgreSQL's"
)


def test_placeholders_are_numbered_in_order_and_a_named_one_keeps_its_number():
    named = prepared.statement("SELECT %(a)s + %(b)s, %(a)s || '%%'")
    assert named.prepare == f"PREPARE {named.name} AS SELECT $1 + $2, $1 || '%'"
    assert named.execute == f"EXECUTE {named.name}(%(a)s, %(b)s)"
    positional = prepared.statement("SELECT %s, %s")
    assert positional.prepare == f"PREPARE {positional.name} AS SELECT $1, $2"
    assert positional.execute == f"EXECUTE {positional.name}(%s, %s)"
    bare = prepared.statement("SELECT 1")
    assert bare.execute == f"EXECUTE {bare.name}"


def test_each_statement_has_a_name_of_its_own_and_one_style_of_placeholder():
    names = {prepared.statement(sql).name for sql in ("SELECT %s", "SELECT %s + 1", "SELECT %(a)s")}
    assert len(names) == 3
    assert prepared.statement("SELECT %s").name == prepared.statement("SELECT %s").name
    with pytest.raises(ValueError, match="not both"):
        prepared.statement("SELECT %s, %(a)s")


def run(sql: str, params, **options):
    with connection.cursor() as cursor:
        prepared.execute(cursor, prepared.statement(sql), params, **options)
        return cursor.fetchone()


def session_reset() -> None:
    """What a connection pooler's reset does to the server's session: every statement gone."""
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")


def server_has(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = %s", [name])
        return cursor.fetchone()[0] == 1


@postgres_only
@pytest.mark.django_db
def test_a_statement_is_prepared_once_per_connection():
    sql = "SELECT %s::int * 2"
    with CaptureQueriesContext(connection) as sent:
        assert run(sql, [21]) == (42,)
        assert run(sql, [5]) == (10,)
    assert [q["sql"].split(" ", 1)[0] for q in sent.captured_queries] == ["PREPARE", "EXECUTE", "EXECUTE"]
    assert server_has(prepared.statement(sql).name)


@postgres_only
@pytest.mark.django_db
def test_a_new_connection_prepares_it_again():
    sql = "SELECT %s::int + 1"
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            prepared.execute(cursor, prepared.statement(sql), [1])
            assert cursor.fetchone() == (2,)
        assert run(sql, [2]) == (3,)  # this connection has not got it: it prepares its own
        with CaptureQueriesContext(other) as sent, other.cursor() as cursor:
            prepared.execute(cursor, prepared.statement(sql), [3])
            assert cursor.fetchone() == (4,)
        assert len(sent.captured_queries) == 1
    finally:
        other.close()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_the_session_lost_is_prepared_again_and_runs_once():
    sql = "INSERT INTO requests_app_mailwindow (period, starts_at, sent) VALUES (%s, now(), 1) RETURNING sent"
    assert run(sql, [60]) == (1,)
    session_reset()
    assert run(sql, [120]) == (1,)
    assert server_has(prepared.statement(sql).name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT period FROM requests_app_mailwindow ORDER BY period")
        assert cursor.fetchall() == [(60,), (120,)]  # the retried one written once


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_a_lost_statement_is_an_error_not_a_second_run():
    sql = "SELECT %s::int - 1"
    assert run(sql, [1]) == (0,)
    session_reset()
    with pytest.raises(DatabaseError), transaction.atomic():
        run(sql, [2])


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_what_runs_first_shares_the_statements_transaction():
    setting = "SELECT current_setting('synchronous_commit') || %s"
    assert run(setting, ["!"], first="SET LOCAL synchronous_commit TO OFF") == ("off!",)
    assert run(setting, ["!"]) == ("on!",)  # it lasted for that message's transaction only


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_after_a_session_reset_every_statement_is_prepared_again_on_its_next_run():
    first, second = "SELECT %s::int * 3", "SELECT %s::int * 4"
    assert run(first, [1]) == (3,) and run(second, [1]) == (4,)
    session_reset()
    with pytest.raises(DatabaseError), transaction.atomic():
        run(second, [2])  # inside a transaction: an error, and the connection forgets them all
    with transaction.atomic():  # so the next run of each prepares first, even inside one
        assert run(first, [2]) == (6,)
        assert run(second, [2]) == (8,)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_one_statement_deallocated_by_hand_leaves_the_others_usable():
    first, second = "SELECT %s::int * 5", "SELECT %s::int * 6"
    assert run(first, [1]) == (5,) and run(second, [1]) == (6,)
    with connection.cursor() as cursor:
        cursor.execute(f"DEALLOCATE {prepared.statement(first).name}")
    assert run(first, [2]) == (10,)  # found gone: prepared again, and the others forgotten
    assert run(second, [2]) == (12,)  # forgotten, but still there: prepared "again" in vain, used


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_portal_ceiling_and_the_submission_are_prepared(listed, one_instant):
    session_reset()
    services.request_submit(email=SENDER, ip=parse_ip(LISTED_IP))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'portal_%%'")
        statements = [row[0] for row in cursor.fetchall()]
    assert len(statements) == 2
    assert any("requests_app_mailwindow" in s and "blocklist_entry" in s for s in statements)
    assert any("requests_app_delistrequest" in s for s in statements)
