#!/usr/bin/env python
"""How fast the abuse desk's admin lists open with a million rows in each.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/delist .venv/bin/python bench/admin_benchmark.py

Loads 1,000,000 active entries plus 100,000 inactive (the lookup benchmark's layout), 1,000,000
requests in every state (1% in review) and an audit event for each entry and request into a
scratch database (delist_bench_admin, dropped at the end unless --keep). Then renders, in
interleaved rounds, each list as the desk opens it (the changelist view, its template included)
beside two baselines from the same run: the admin's index page (the framework's own cost), and
the same list through a stock ModelAdmin configured as the list was before (exact counts,
SELECT DISTINCT filters, date_hierarchy, facets allowed), which is what grows with the table.

Goal (issue 10): every list under a second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_benchmark as data  # noqa: E402  (the shared loader)

ROOT = data.ROOT

REQUESTS_SQL = """
INSERT INTO requests_app_delistrequest
    (email, mailbox, email_domain, ip, state, status_key, language, created_at, confirmed_at,
     decided_at, decided_by, effective_at, completed_at, closed_at, decision_reason, expiry_reason)
SELECT 'postmaster@mail' || (n %% 5000) || '.example.com', 'postmaster@mail' || (n %% 5000) || '.example.com',
       'mail' || (n %% 5000) || '.example.com',
       ('5.' || (n / 65536) %% 256 || '.' || (n / 256) %% 256 || '.' || n %% 256)::inet,
       s.state, md5(n::text), 'en', t.at,
       CASE WHEN s.state IN ('pending', 'expired', 'superseded') THEN NULL
            ELSE t.at + interval '5 minutes' END,
       CASE WHEN s.state IN ('approved', 'completed', 'rejected') THEN t.at + interval '6 minutes' END,
       CASE WHEN s.state IN ('approved', 'completed', 'rejected') THEN 'self-service' ELSE '' END,
       CASE WHEN s.state IN ('approved', 'completed') THEN t.at + interval '1 hour' END,
       CASE WHEN s.state = 'completed' THEN t.at + interval '1 hour' END,
       CASE WHEN s.state IN ('completed', 'rejected', 'expired', 'superseded')
            THEN t.at + interval '1 hour' END,
       '', ''
FROM generate_series(1, %(rows)s) AS n,
     LATERAL (SELECT CASE WHEN n %% 100 = 0 THEN 'needs_review' WHEN n %% 100 = 1 THEN 'pending'
                          WHEN n %% 100 = 2 THEN 'approved' WHEN n %% 100 < 10 THEN 'expired'
                          WHEN n %% 100 < 12 THEN 'rejected' WHEN n %% 100 < 15 THEN 'superseded'
                          ELSE 'completed' END AS state) AS s,
     LATERAL (SELECT timestamptz '2025-01-01' + n * interval '20 seconds' AS at) AS t
"""

EVENTS_SQL = [
    "INSERT INTO blocklist_event (at, action, actor, reason, entry_id) "
    "SELECT listed_at, 'listed', CASE WHEN id % 3 = 0 THEN 'import' ELSE 'admin' || (id % 7) END, '', id "
    "FROM blocklist_entry",
    "INSERT INTO blocklist_event (at, action, actor, reason, request_id) "
    "SELECT created_at, 'submitted', 'sender', '', id FROM requests_app_delistrequest",
    "INSERT INTO blocklist_event (at, action, actor, reason, request_id) "
    "SELECT confirmed_at, 'sent_to_review', 'policy', 'a covering entry is a range', id "
    "FROM requests_app_delistrequest WHERE state = 'needs_review'",
]


def load(url: str, rows: int, folder: Path) -> None:
    import psycopg2

    data.load(url, rows, folder, data.network_of_large)
    started = time.monotonic()
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(REQUESTS_SQL, {"rows": rows})
        for sql in EVENTS_SQL:
            cursor.execute(sql)
        for table in ("requests_app_delistrequest", "blocklist_event", "blocklist_entry"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT count(*) FROM requests_app_delistrequest")
        (requests,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM blocklist_event")
        (events,) = cursor.fetchone()
    connection.close()
    print(f"loaded {requests} requests and {events} events in {time.monotonic() - started:.1f} s")


def stock_admin(model_admin):
    """A ModelAdmin with Django's defaults and the list's configuration of before."""
    from django.contrib import admin

    from blocklist.admin import StatusFilter
    from blocklist.models import Entry, Event
    from requests_app.models import DelistRequest, ReviewQueue

    before = {
        Entry: {
            "list_filter": [StatusFilter, "code", "source", "self_service"],
            "date_hierarchy": "listed_at",
        },
        Event: {"list_filter": ["action", "actor", "at"], "date_hierarchy": "at"},
        DelistRequest: {"list_filter": ["state", "created_at", "decided_at"], "date_hierarchy": "created_at"},
        ReviewQueue: {"list_filter": ["confirmed_at"], "date_hierarchy": None},
    }[model_admin.model]
    stock = type(
        f"Stock{type(model_admin).__name__}",
        (type(model_admin),),
        {
            "paginator": admin.ModelAdmin.paginator,
            "show_full_result_count": True,
            "show_facets": admin.ShowFacets.ALLOW,
            **before,
        },
    )
    return stock(model_admin.model, model_admin.admin_site)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default="delist_bench_admin")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    url, admin_connection, kept = data.scratch_database(args.database, keep=args.keep)
    folder = Path(tempfile.mkdtemp(prefix="delist-bench-admin-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
            "DATABASE_URL": url,
            "DEBUG": "false",
            "HTTPS": "false",
            "SECRET_KEY": "benchmark-" + "x" * 40,
            "ALLOWED_HOSTS": "testserver",
            "VAR_DIR": str(folder / "var"),
        }
    )
    try:
        import django

        sys.path.insert(0, str(ROOT))
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if not kept:
            load(url, args.rows, folder)
        measure(args.rounds)
    finally:
        from django.db import connections

        connections.close_all()
        data.clean_up(folder, admin_connection, args.database, keep=args.keep)


def measure(rounds: int) -> None:
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from blocklist.models import Entry, Event
    from requests_app.models import DelistRequest, ReviewQueue

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "b@x.org", "x"
    )
    factory = RequestFactory()

    def request(path: str, query: dict | None = None):
        req = factory.get(path, query or {})
        req.user = user
        req.session = {}
        req._messages = FallbackStorage(req)
        return req

    def index():
        return admin.site.index(request("/admin/"))

    pages = {
        "entries": (Entry, {}),
        "entries, active": (Entry, {"status": "active"}),
        "entries, source=bench": (Entry, {"source": "bench"}),
        "requests": (DelistRequest, {}),
        "requests, completed": (DelistRequest, {"state__exact": "completed"}),
        "review queue": (ReviewQueue, {}),
        "audit trail": (Event, {}),
    }
    ours = {name: admin.site._registry[model] for name, (model, _q) in pages.items()}
    stock = {name: stock_admin(model_admin) for name, model_admin in ours.items()}

    def view(model_admin, query):
        path = f"/admin/{model_admin.opts.app_label}/{model_admin.opts.model_name}/"
        return lambda: model_admin.changelist_view(request(path, query))

    def timed(fn) -> tuple[float, int]:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = fn()
            if hasattr(response, "render"):
                response.render()
            ms = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.status_code
        return ms, len(queries)

    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for _round in range(rounds):
        for name, (_model, query) in pages.items():
            # Interleaved: each list beside its baselines at the same moment of a noisy machine.
            for how, fn in (
                ("index", index),
                ("ours", view(ours[name], query)),
                ("stock", view(stock[name], query)),
            ):
                ms, n = timed(fn)
                times.setdefault((name, how), []).append(ms)
                counts[(name, how)] = n

    print(
        f"\nmedian of {rounds} rounds, ms (queries); ratios against the admin index page and the stock list:"
    )
    print(
        f"{'list':24} {'ours ms':>8} {'q':>3} {'index ms':>9} {'ours/index':>10} "
        f"{'stock ms':>9} {'q':>3} {'ours/stock':>10}  under 1 s"
    )
    for name in pages:
        ours_ms, index_ms, stock_ms = (
            statistics.median(times[(name, how)]) for how in ("ours", "index", "stock")
        )
        print(
            f"{name:24} {ours_ms:8.0f} {counts[(name, 'ours')]:3} {index_ms:9.1f} {ours_ms / index_ms:9.1f}x "
            f"{stock_ms:9.0f} {counts[(name, 'stock')]:3} {ours_ms / stock_ms:9.2f}x  "
            f"{'yes' if ours_ms < 1000 else 'NO'}"
        )


if __name__ == "__main__":
    main()
