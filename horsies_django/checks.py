"""System checks: a bad `HORSIES` setting is reported by `manage.py check`, not at run time.

Every management command runs them first, so a worker with a bad setting does not start.
"""

from __future__ import annotations

from collections.abc import Callable
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
        if task and unknown:
            errors.append(
                Error(
                    f"task {name!r} at {where(task.fn)}: {unknown}",
                    hint="Add the queue to HORSIES['QUEUES'] or pass a listed queue_name to @app.task.",
                    id="horsies_django.E011",
                )
            )
    return errors


def where(fn: Callable[..., Any]) -> str:
    """`path/to/tasks.py:12`, where a task's function is defined."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else getattr(fn, "__module__", "?")
