"""The SMTP server away and back: the confirmation mail is retried, goes out exactly once when
it returns, and its link still confirms."""

import pytest

from tests.faults.conftest import Sender, assert_exactly_once, links_to, received, settle, wait_for

pytestmark = pytest.mark.faults

IP = "5.61.14.7"
FAILED_ATTEMPTS = 3
MAIL = "SELECT attempts, sent_at IS NOT NULL, last_error FROM requests_app_mail"


def test_a_confirmation_owed_while_smtp_is_away_goes_out_once_and_still_confirms(
    scratch_database, own_redis, smtp_server, portals
):
    portal = portals(database_url=scratch_database, redis_url=own_redis.url, smtp=smtp_server)
    portal.list_ips([IP])
    portal.start_all()
    portal.wait_healthy()
    smtp_server.stop()
    sender = Sender(portal, "postmaster@a.example.com", IP)
    sender.submit()

    backoffs = []
    for attempt in range(1, FAILED_ATTEMPTS + 1):
        if attempt > 1:
            # The back-off (30 s, then doubling) is a constant of the outbox with no setting:
            # make the retry due now, as an operator could, instead of waiting it out. Blanking
            # last_error tells the next failure's record from the claim before it.
            portal.sql("UPDATE requests_app_mail SET due_at = now(), last_error = ''")
        wait_for(
            lambda n=attempt: (row := portal.sql(MAIL)[0])[0] == n and "Connection" in row[2],
            timeout=15,
            what=f"failed attempt {attempt}",
        )
        backoffs.append(portal.count("SELECT extract(epoch FROM due_at - now())::int FROM requests_app_mail"))
    print("retry due after (s):", backoffs)
    assert all(b > 20 for b in backoffs)  # backed off, never retried in a tight loop
    assert portal.sql(MAIL)[0][1] is False and smtp_server.messages == []

    smtp_server.start()
    portal.sql("UPDATE requests_app_mail SET due_at = now()")
    wait_for(lambda: smtp_server.messages, timeout=15, what="the confirmation mail")
    settle()
    assert_exactly_once("confirmation mail", [(sender.email, "confirmation")], received(smtp_server))
    assert portal.sql(MAIL)[0][:2] == (FAILED_ATTEMPTS + 1, True)
    assert portal.sql("SELECT state FROM requests_app_delistrequest") == [("pending",)]
    assert "waiting for confirmation" in sender.get(sender.status_url).text

    sender.confirm(links_to(smtp_server, sender.email)[0])
    wait_for(lambda: not portal.listed(IP), timeout=30, what=f"{IP} to be delisted")
    wait_for(lambda: len(smtp_server.messages) >= 2, timeout=30, what="the completion mail")
    settle()
    owed = [(sender.email, "confirmation"), (sender.email, "completed")]
    assert_exactly_once("mail", owed, received(smtp_server))
