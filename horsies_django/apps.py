from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class HorsiesConfig(AppConfig):
    name = "horsies_django"
    label = "horsies_django"
    verbose_name = "Horsies tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from .app import suppress_sends
        from .checks import check_settings
        from .scheduler import check_schedules

        checks.register(check_settings, checks.Tags.compatibility)
        checks.register(check_schedules, checks.Tags.compatibility)
        # Like admin.py: every installed app's tasks.py registers its tasks with the app. A send
        # at module level would run once in every process that starts Django (each worker, each
        # child, each manage.py command), so sends are suppressed while these modules import.
        with suppress_sends():
            autodiscover_modules("tasks")
