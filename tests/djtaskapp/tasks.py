"""Tasks written with Django's own `@task` (django.tasks, or the django-tasks backport on Django 5.2)."""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:
    from django_tasks import TaskContext, task  # type: ignore[no-redef]


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="standard", priority=10)
def describe(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt_number(context: TaskContext, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "status": str(context.task_result.status)}


@task
async def double_later(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def returns_object() -> Any:
    return object()


@task(priority=-50)
def low(label: str) -> str:
    return label


@task(priority=50)
def high(label: str) -> str:
    return label
