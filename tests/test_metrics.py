"""/metrics: Prometheus' text format behind METRICS_TOKEN, with figures that match the rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from blocklist.exports import MARKER, exports_refresh, list_version
from blocklist.services import entries_delist
from requests_app import outbox, services
from requests_app.models import DelistRequest, Mail, State
from tests.conftest import IN_RANGE_IP, LISTED_IP, free_port

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
TOKEN = "metrics-token-for-tests"
ROOT = Path(__file__).resolve().parents[1]


def scrape(client, token: str | None = TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.get("/metrics", **headers)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition, keyed by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def test_it_answers_404_while_metrics_token_is_unset(client, db, settings):
    settings.METRICS_TOKEN = None
    assert scrape(client).status_code == 404
    assert scrape(client, token=None).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer tökén"],
)
def test_a_missing_or_wrong_token_gets_401(client, db, metrics_on, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"delist_" not in response.content


def test_the_database_figures_match_the_rows_they_count(
    client,
    db,
    metrics_on,
    settings,
    listed,
    listing,
    confirmed,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    settings.DELIST_PROPAGATION_DELAY = 600
    # Entries that do not count: one delisted, one expired by T0.
    entries_delist([listing("81.2.69.0/24").pk], actor="admin")
    listing("81.2.70.1", expires_at=T0 - timedelta(hours=1))

    # Three days before T0: a request whose confirmation mail is given up on at T0.
    with time_machine.travel(T0 - timedelta(days=3), tick=False):
        client.post(reverse("requests:submit"), {"email": "old@example.net", "ip": LISTED_IP})
    with time_machine.travel(T0, tick=False):
        assert outbox.mails_give_up() == 1
        confirmed(ip=IN_RANGE_IP, email="desk@example.com")
        confirmed(ip=LISTED_IP, email="ops@example.com")
        # A confirmation mail owed, and failing: SMTP is not there.
        client.post(reverse("requests:submit"), {"email": "noc@example.org", "ip": "2a05:d018:1:2::5"})
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
        owed = Mail.objects.get(request__email="noc@example.org")
        assert outbox.mail_send(mail_id=owed.pk) is False
    # (Both made at the same frozen moment: found by their sender, not by "latest".)
    assert DelistRequest.objects.get(email="desk@example.com").state == State.NEEDS_REVIEW
    assert DelistRequest.objects.get(email="ops@example.com").state == State.APPROVED

    with time_machine.travel(T0 + timedelta(seconds=700), tick=False):
        response = scrape(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content.decode())

    assert value(found, "delist_database_up") == 1
    expected_states = {state: 0 for state in State.values}
    expected_states.update({"pending": 2, "needs_review": 1, "approved": 1})
    assert {state: value(found, "delist_requests", state=state) for state in State.values} == expected_states
    assert value(found, "delist_review_queue_requests") == 1
    assert value(found, "delist_review_queue_oldest_age_seconds") == 700  # confirmed at T0
    assert value(found, "delist_delistings_due") == 1
    assert value(found, "delist_delistings_due_oldest_lag_seconds") == 100  # due at T0 + 600
    assert value(found, "delist_mail_outbox_backlog") == 1
    assert value(found, "delist_mail_outbox_retrying") == 1
    assert value(found, "delist_mail_outbox_oldest_age_seconds") == 700
    assert value(found, "delist_mails_failed") == 1
    assert value(found, "delist_entries_active", family="ipv4") == 2  # the single address and the /24
    assert value(found, "delist_entries_active", family="ipv6") == 1
    assert value(found, "delist_list_version") == list_version()
    # No sweep has run and EXPORT_DIR is unset: those series are absent, not zero.
    assert not any(name.startswith(("delist_sweep_", "delist_export_")) for name, _labels in found)


def test_the_last_sweep_and_the_exports_show_when_they_happened(
    client, db, metrics_on, settings, listed, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    with time_machine.travel(T0, tick=False):
        services.sweep()  # writes the exports too: they did not exist
    marker = tmp_path / "exports" / MARKER
    written_at = marker.stat().st_mtime
    listing_changed = list_version()

    with time_machine.travel(T0 + timedelta(seconds=42), tick=False):
        found = samples(scrape(client).content.decode())
    assert value(found, "delist_sweep_last_finished_timestamp_seconds") == T0.timestamp()
    assert value(found, "delist_sweep_last_failed_steps") == 0
    assert value(found, "delist_export_version") == value(found, "delist_list_version") == listing_changed
    assert value(found, "delist_export_written_timestamp_seconds") == written_at
    assert value(found, "delist_export_age_seconds") == pytest.approx(T0.timestamp() + 42 - written_at)

    entries_delist([listed["single"].pk], actor="admin")  # the files are behind until the next refresh
    found = samples(scrape(client).content.decode())
    assert value(found, "delist_list_version") == listing_changed + 1
    assert value(found, "delist_export_version") == listing_changed
    exports_refresh()
    assert value(samples(scrape(client).content.decode()), "delist_export_version") == listing_changed + 1


def test_http_requests_are_counted_by_view_and_status_class_not_by_path(client, db, metrics_on):
    before = samples(scrape(client).content.decode())

    def count(found, view, status):
        return found.get(
            ("delist_http_requests_total", frozenset({"view": view, "status": status}.items())), 0
        )

    for _ in range(3):
        assert client.get(reverse("requests:home")).status_code == 200
    assert client.get("/no/such/page/12345").status_code == 404
    assert client.get("/no/such/page/67890").status_code == 404
    after = samples(scrape(client).content.decode())

    assert count(after, "requests:home", "2xx") - count(before, "requests:home", "2xx") == 3
    assert count(after, "unmatched", "4xx") - count(before, "unmatched", "4xx") == 2
    latency = ("delist_http_request_duration_seconds_count", frozenset({"view": "requests:home"}.items()))
    assert after[latency] - before.get(latency, 0) == 3
    # A raw path never becomes a label.
    assert not any("12345" in value for _name, labels in after for _key, value in labels)


def test_a_database_that_does_not_answer_is_reported_not_a_failed_scrape(client, db, metrics_on, monkeypatch):
    from django.db import OperationalError

    from monitoring import metrics

    def refused(now):
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics, "_mail", refused)
    response = scrape(client)
    assert response.status_code == 200
    found = samples(response.content.decode())
    assert value(found, "delist_database_up") == 0
    assert ("delist_requests", frozenset({"state": "pending"}.items())) not in found


def test_under_gunicorn_every_workers_requests_are_added_up(tmp_path):
    """Three workers, each counting in files of its own (multiprocess mode): a scrape, whichever
    worker answers it, shows the requests all of them served."""
    import requests

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_", "PROMETHEUS_"))},
        "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": "metrics-tests-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "VAR_DIR": str(tmp_path / "var"),
        "METRICS_TOKEN": TOKEN,
        "WEB_CONCURRENCY": "3",
        "GUNICORN_THREADS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    # Left over from an earlier run: gunicorn must empty the folder, or the scrape would read it.
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"not a metrics file")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    log = (tmp_path / "gunicorn.log").open("w")
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "delist_portal.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/static/css/portal.css", timeout=2)
                break
            except requests.RequestException:  # not up yet, or busy booting: ask again
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.3)
        # New connections each time: gunicorn's workers take turns accepting them.
        for _ in range(30):
            assert requests.get(f"{base}/", timeout=10).status_code == 200
        answers = [
            requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            for _ in range(5)
        ]
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        log.close()
    for answer in answers:
        assert answer.status_code == 200
        found = samples(answer.text)
        assert value(found, "delist_http_requests_total", view="requests:home", status="2xx") == 30
    # Counted in the workers' files (one per process), not in one process's memory.
    assert list((tmp_path / "metrics").glob("counter_*.db"))
    assert not (tmp_path / "metrics" / "counter_1.db").exists()


def test_webhook_backlog_counts_what_is_owed_and_what_was_given_up(client, db, metrics_on, settings):
    from webhooks.events import emit
    from webhooks.models import Delivery, Endpoint

    settings.WEBHOOK_ALLOW_PRIVATE = True
    Endpoint.objects.create(name="a", url="http://127.0.0.1:9/a", events=["entry.listed"])
    Endpoint.objects.create(name="b", url="http://127.0.0.1:9/b", events=["entry.listed"])
    with time_machine.travel(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), tick=False):
        emit("entry.listed", {"network": "5.61.14.7/32"})
        emit("entry.listed", {"network": "5.61.14.8/32"})
    Delivery.objects.filter(pk=Delivery.objects.order_by("pk").first().pk).update(
        status=Delivery.Status.FAILED
    )
    with time_machine.travel(datetime(2026, 3, 2, 8, 10, tzinfo=UTC), tick=False):
        found = samples(scrape(client).content.decode())
    assert value(found, "delist_webhook_backlog") == 3
    assert value(found, "delist_webhooks_failed") == 1
    assert value(found, "delist_webhook_oldest_age_seconds") == 600
