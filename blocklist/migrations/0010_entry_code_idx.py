from django.db import migrations, models


class Migration(migrations.Migration):
    """The admin's SMTP code filter reads the codes in use along this index (portal_lib.big_lists)."""

    dependencies = [
        ("blocklist", "0009_admin_list_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(fields=["code"], name="entry_code_idx"),
        ),
    ]
