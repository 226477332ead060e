from django.db import migrations, models

# Fills the copy for rows written before it existed. Plain SQL both backends run; a row it misses (none should)
# is read from its version row, as before.
BACKFILL = (
    "UPDATE records_resource SET"
    " current_ciphertext = (SELECT v.ciphertext FROM records_resourceversion v"
    " WHERE v.resource_id = records_resource.id AND v.version = records_resource.current_version),"
    " current_wrapped_data_key = (SELECT v.wrapped_data_key FROM records_resourceversion v"
    " WHERE v.resource_id = records_resource.id AND v.version = records_resource.current_version)"
    " WHERE current_ciphertext IS NULL"
)


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0005_resource_head_mac"),
    ]

    operations = [
        migrations.AddField(
            model_name="resource",
            name="current_ciphertext",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="resource",
            name="current_wrapped_data_key",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
