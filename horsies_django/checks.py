"""System checks: a bad `HORSIES` setting is reported by `manage.py check`, not at run time."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from .conf import SettingsError, parse


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    try:
        parsed = parse(getattr(settings, "HORSIES", None))
    except SettingsError as exc:
        return [Error(str(exc), hint=exc.hint, id=exc.check_id)]
    from .app import app

    errors: list[CheckMessage] = []
    for name in app.list_tasks():
        task = app.get_task(name)
        unknown = parsed.unknown_queue(task.queue_name) if task else None
        if unknown:
            errors.append(
                Error(
                    f"task {name!r}: {unknown}",
                    hint="Add the queue to HORSIES['QUEUES'] or pass a listed queue_name to @app.task.",
                    id="horsies_django.E011",
                )
            )
    return errors
