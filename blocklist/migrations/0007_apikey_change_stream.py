"""API keys, and what the change stream (blocklist.changes) reads events by.

On PostgreSQL every event row records the transaction that wrote it (`xact`, filled by the
column's default, so the import's bulk SQL and the ORM alike set it without naming it). The
stream hands out events by that id, in windows of finished transactions, so an event that
committed late is never skipped. The column is unknown to the ORM: only the stream reads it.
It is added without a default first, then given one, so existing rows are not rewritten.
On SQLite, whose writers take turns, event ids grow in commit order and the id is enough.
entry_lapsing_idx finds the live entries past their expiry (the export's ETag counts them,
the sweep closes them) without reading the list.
"""

import django.utils.timezone
from django.db import migrations, models

LAPSING = (
    "CREATE INDEX entry_lapsing_idx ON blocklist_entry (expires_at) "
    "WHERE delisted_at IS NULL AND expires_at IS NOT NULL"
)
POSTGRESQL = [
    "ALTER TABLE blocklist_event ADD COLUMN xact xid8",
    "ALTER TABLE blocklist_event ALTER COLUMN xact SET DEFAULT pg_current_xact_id()",
    "CREATE INDEX event_change_stream_idx ON blocklist_event (xact, id) WHERE entry_id IS NOT NULL",
    LAPSING,
]
POSTGRESQL_UNDO = [
    "DROP INDEX IF EXISTS entry_lapsing_idx",
    "DROP INDEX IF EXISTS event_change_stream_idx",
    "ALTER TABLE blocklist_event DROP COLUMN IF EXISTS xact",
]
SQLITE = ["CREATE INDEX event_change_stream_idx ON blocklist_event (id) WHERE entry_id IS NOT NULL", LAPSING]
SQLITE_UNDO = ["DROP INDEX IF EXISTS entry_lapsing_idx", "DROP INDEX IF EXISTS event_change_stream_idx"]


def _run(postgresql: list[str], sqlite: list[str]):
    def run(apps, schema_editor) -> None:
        for sql in postgresql if schema_editor.connection.vendor == "postgresql" else sqlite:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("blocklist", "0006_entry_network_cidr"),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=64, unique=True, verbose_name="name")),
                (
                    "scope",
                    models.CharField(
                        choices=[("read", "read"), ("write", "write")], max_length=5, verbose_name="scope"
                    ),
                ),
                ("prefix", models.CharField(editable=False, max_length=16, verbose_name="key starts with")),
                ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, verbose_name="created"),
                ),
                ("last_used_at", models.DateTimeField(blank=True, null=True, verbose_name="last used")),
                ("request_count", models.PositiveBigIntegerField(default=0, verbose_name="requests")),
                ("revoked_at", models.DateTimeField(blank=True, null=True, verbose_name="revoked")),
            ],
            options={
                "verbose_name": "API key",
                "verbose_name_plural": "API keys",
                "ordering": ["name"],
            },
        ),
        migrations.RunPython(_run(POSTGRESQL, SQLITE), _run(POSTGRESQL_UNDO, SQLITE_UNDO), elidable=False),
    ]
