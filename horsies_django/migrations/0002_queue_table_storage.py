"""PostgreSQL storage settings for the hot task table (nothing to do on SQLite).

Every claim and finish rewrites a row, so the table collects dead tuples fast; vacuum it after
1% of its rows changed instead of the default 20%, and leave room in each page (fillfactor) so
that updates which touch no indexed column can stay on the same page.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TUNED = (
    "ALTER TABLE horsies_task SET (autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0, fillfactor = 80)"
)
DEFAULTS = (
    "ALTER TABLE horsies_task RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor, "
    "autovacuum_vacuum_cost_delay, fillfactor)"
)


def tune(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TUNED)


def untune(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DEFAULTS)


class Migration(migrations.Migration):
    dependencies = [("horsies_django", "0001_initial")]
    operations = [migrations.RunPython(tune, untune)]
