"""Access-log rows up to a page long stay inline and uncompressed (PostgreSQL only).

A search entry names every version it served: a hundred references are about 6 KB of
`resource_ids`. Past the default 2 KB target PostgreSQL compressed that value, found it still
too long and moved it into the TOAST table, so each such append also wrote two TOAST chunks and
their index entry. With the target at a page's usable size the row is written as it is, once.
Rows longer than that are still compressed and moved as before. Nothing read or hashed changes.
"""

from django.db import migrations

# The largest tuple PostgreSQL allows as a target with the default 8 KB block size.
_TARGET = 8160


def _table(apps, schema_editor) -> str:  # type: ignore[no-untyped-def]
    return schema_editor.quote_name(apps.get_model("audit", "AccessLogEntry")._meta.db_table)


def _inline(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {_table(apps, schema_editor)} SET (toast_tuple_target = {_TARGET})")


def _default(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {_table(apps, schema_editor)} RESET (toast_tuple_target)")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_drop_actor_index"),
    ]

    operations = [migrations.RunPython(_inline, _default)]
