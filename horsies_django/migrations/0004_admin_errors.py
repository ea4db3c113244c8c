"""The operator's admin, round 2: `Task.error_group` (a failure's code and normalised message,
digested) and the partial index the Errors page groups by; `Task.manual_retries`, so attempts read
"attempt N of max" with the operator's retries apart. Existing failed and retrying rows get their
group here."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from horsies_django.types.grouping import group_key

BATCH = 2_000


def fill_groups(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    task_model = apps.get_model("horsies_django", "Task")
    rows = task_model.objects.using(schema_editor.connection.alias).filter(
        status__in=["FAILED", "PENDING"], error_code__isnull=False, error_group__isnull=True
    )
    after = None
    while True:
        page = rows.order_by("pk") if after is None else rows.filter(pk__gt=after).order_by("pk")
        batch = list(page.values_list("pk", "error_code", "error_message")[:BATCH])
        if not batch:
            return
        by_group: dict[str | None, list[object]] = {}
        for pk, code, message in batch:
            by_group.setdefault(group_key(code, message), []).append(pk)
        for group, pks in by_group.items():
            rows.filter(pk__in=pks).update(error_group=group)
        after = batch[-1][0]


class Migration(migrations.Migration):
    dependencies = [("horsies_django", "0003_task_metadata")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="error_group",
            field=models.CharField(
                blank=True,
                help_text="The error code and normalised message, digested: failures alike share it (the Errors page).",
                max_length=16,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="manual_retries",
            field=models.PositiveIntegerField(default=0, db_default=0, help_text="Retries an operator asked for."),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("error_group__isnull", False)),
                fields=["name", "error_group", "status", "finished_at"],
                name="horsies_task_error_group_idx",
            ),
        ),
        migrations.RunPython(fill_groups, migrations.RunPython.noop),
        # Table-less entries for the admin index and sidebar: the dashboard and the Errors page.
        migrations.CreateModel(
            name="Dashboard",
            fields=[],
            options={"verbose_name": "dashboard", "verbose_name_plural": "dashboard", "proxy": True},
            bases=("horsies_django.task",),
        ),
        migrations.CreateModel(
            name="ErrorGroupEntry",
            fields=[],
            options={"verbose_name": "error", "verbose_name_plural": "errors", "proxy": True},
            bases=("horsies_django.task",),
        ),
    ]
