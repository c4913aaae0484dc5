"""Entry.network_cidr, and on PostgreSQL the index that answers a lookup in one probe.

The index is PostgreSQL's own kind (SP-GiST over inet_ops, partial on live entries), which
Meta.indexes cannot declare portably, so it is created here and only there. Expiry depends on
the time of the query, so it is filtered at query time, not in the index.
"""

import django.db.models.functions.comparison
from django.db import migrations, models

import blocklist.models

CREATE_INDEX = (
    "CREATE INDEX entry_cidr_idx ON blocklist_entry USING spgist (network_cidr inet_ops) "
    "WHERE delisted_at IS NULL"
)
DROP_INDEX = "DROP INDEX IF EXISTS entry_cidr_idx"


def _on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("blocklist", "0005_importjob"),
    ]

    operations = [
        migrations.AddField(
            model_name="entry",
            name="network_cidr",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.comparison.Cast(
                    "network", output_field=blocklist.models.CidrField(max_length=43)
                ),
                output_field=blocklist.models.CidrField(max_length=43),
            ),
        ),
        migrations.RunPython(_on_postgresql(CREATE_INDEX), _on_postgresql(DROP_INDEX), elidable=False),
    ]
