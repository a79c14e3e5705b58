from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("news", "0006_fk_indexes_covered"),
    ]

    operations = [
        migrations.RenameField(model_name="impression", old_name="mode", new_name="arm"),
        migrations.RemoveField(model_name="item", name="similarity_clicks"),
        migrations.RemoveField(model_name="item", name="similarity_expected"),
    ]
