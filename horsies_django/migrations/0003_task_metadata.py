"""`Task.retry_count`: how many times a RetryPolicy put the task back to run again (horsies' field)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("horsies_django", "0002_queue_table_storage"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="retry_count",
            field=models.PositiveIntegerField(
                db_default=0, default=0, help_text="Times it was put back to run again by its RetryPolicy."
            ),
        ),
    ]
