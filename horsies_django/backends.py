"""A `django.tasks` backend on horsies_django's tables, run by `horsies_worker`.

    TASKS = {"default": {"BACKEND": "horsies_django.backends.HorsiesBackend", "QUEUES": ["default"]}}

Django 6 has `django.tasks`; on Django 5.2 the `django-tasks` backport package provides the same API
under `django_tasks`. Each `@task` function becomes a horsies task named after its module path, so
it is stored, claimed, retried by crash recovery and shown in the admin like an `@app.task`.

Priorities: Django's run larger first from -100 to 100; ours run smaller first from 1 to 1000.
Django's `p` is stored as `101 - p` (100 -> 1, 0 -> 101, -100 -> 201) and read back the same way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.module_loading import import_string

from .app import app as default_app
from .conf import get_settings
from .types.codec import CodecError, decode_result, dumps
from .types.codes import TaskSendErrorCode
from .types.results import Err, Ok, TaskError, TaskResult

if TYPE_CHECKING:
    from django.dispatch import Signal
    from django.tasks import Task as DjangoTask
    from django.tasks import TaskContext, task_backends
    from django.tasks import TaskResult as DjangoTaskResult
    from django.tasks import TaskResultStatus as Status
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
    from django.tasks.base import TaskError as DjangoTaskError
    from django.tasks.exceptions import InvalidTask, TaskException, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started

    def normalize_json(obj: Any) -> Any: ...

else:
    try:  # Django 6+
        from django.tasks import Task as DjangoTask
        from django.tasks import TaskContext, task_backends
        from django.tasks import TaskResult as DjangoTaskResult
        from django.tasks import TaskResultStatus as Status
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
        from django.tasks.base import TaskError as DjangoTaskError
        from django.tasks.exceptions import InvalidTask, TaskException, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
    except ImportError:  # Django 5.2 with the django-tasks backport
        from django_tasks import TaskContext, task_backends
        from django_tasks import TaskResult as DjangoTaskResult
        from django_tasks import TaskResultStatus as Status
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
        from django_tasks.base import Task as DjangoTask
        from django_tasks.base import TaskError as DjangoTaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskException, TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json

logger = logging.getLogger("horsies_django.backends")

PRIORITY_OFFSET = 101


# Django tasks seen in this process, by module path (the horsies task name).
_django_tasks: dict[str, DjangoTask[..., Any]] = {}


class TaskFailed(Exception):  # noqa: N818 (named as what happened, like Django's exceptions)
    """A failure that raised nothing in the task: a timeout, a cancel, an expiry, a lost worker.

    `TaskResult.errors` names this class for such failures; the traceback holds the error code."""


class EnqueueFailed(TaskException):  # noqa: N818
    """The task could not be written (a database error); nothing was queued."""


def to_horsies_priority(priority: int) -> int:
    """Django's priority (-100..100, larger first) as ours (1..1000, smaller first)."""
    return PRIORITY_OFFSET - priority


def to_django_priority(priority: int) -> int:
    """Our priority as Django's; ours past 201 (lower than Django can say) read as -100."""
    return max(TASK_MIN_PRIORITY, min(TASK_MAX_PRIORITY, PRIORITY_OFFSET - priority))


def _send_robust(signal: Signal, sender: type[Any], task_result: DjangoTaskResult[..., Any]) -> None:
    # A receiver's bug must not turn a written task into a failed enqueue, or a run into a failure;
    # send_robust logs it (on "django.dispatch") and goes on.
    signal.send_robust(sender=sender, task_result=task_result)


class HorsiesBackend(BaseTaskBackend):
    """Runs `django.tasks` tasks with `horsies_worker` from horsies_django's tables."""

    supports_defer = True
    """`run_after` is stored as the task's `run_at`."""
    supports_async_task = True
    """Coroutine functions run in the worker under `async_to_sync`."""
    supports_get_result = True
    """Results are read from the database, from any process."""
    supports_priority = True
    """Priorities are stored in our order (see the module docstring)."""

    def validate_task(self, task: DjangoTask[..., Any]) -> None:
        # Django calls this when `@task` decorates, at import: a queue missing from
        # HORSIES['QUEUES'] is refused at enqueue (and reported by `manage.py check` for
        # @app.task ones, E011), not with a traceback that keeps the project from starting.
        super().validate_task(task)
        _register(task)

    def enqueue(self, task: DjangoTask[Any, Any], args: Any, kwargs: Any) -> DjangoTaskResult[Any, Any]:
        self.validate_task(task)
        unknown = get_settings().unknown_queue(task.queue_name)
        if unknown:
            raise InvalidTask(unknown)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        try:
            dumps([args, kwargs])  # NaN and infinities: JSON cannot spell them; refuse, do not store null
        except CodecError as exc:
            raise InvalidTask(f"task {task.module_path}: arguments are not JSON: {exc}") from None
        runner = default_app.get_task(task.module_path)
        assert runner is not None, "validate_task() registers the task"
        runner = runner.with_options(queue_name=task.queue_name, priority=to_horsies_priority(task.priority))
        delay = 0.0
        if task.run_after is not None:
            delay = max((task.run_after - timezone.now()).total_seconds(), 0.0)
        match runner.schedule(delay, args, kwargs):
            case Ok(handle):
                task_id = handle.task_id
            case Err(error):
                if error.code == TaskSendErrorCode.ENQUEUE_FAILED:
                    raise EnqueueFailed(error.message)
                raise InvalidTask(error.message)
        result = self.get_result(task_id)
        _send_robust(task_enqueued, type(self), result)
        return result

    def get_result(self, result_id: str) -> DjangoTaskResult[Any, Any]:
        from .models import HELD_STATUSES, TERMINAL_STATUSES, Task, TaskStatus

        try:
            pk = uuid.UUID(result_id) if isinstance(result_id, str) else None
        except ValueError:
            pk = None
        if pk is None:
            raise TaskResultDoesNotExist(f"{result_id!r:.100} is not a task id")
        row = Task.objects.using(get_settings().database).filter(pk=pk).first()
        task = _django_task(row.name) if row is not None else None
        if row is None or task is None:
            raise TaskResultDoesNotExist(result_id)
        task = task.using(priority=to_django_priority(row.priority), queue_name=row.queue_name, backend=self.alias)
        attempts = list(row.attempts.order_by("number"))
        worker_ids = [a.worker_id for a in attempts]
        if row.status in HELD_STATUSES:
            worker_ids.append(row.worker_id or "")
        stored = row.arguments if isinstance(row.arguments, dict) else {}
        result = DjangoTaskResult(
            task=task,
            id=str(row.id),
            status=_django_status(row.status),
            enqueued_at=row.enqueued_at,
            started_at=attempts[0].started_at if attempts else row.started_at,
            finished_at=row.finished_at if row.status in TERMINAL_STATUSES else None,
            last_attempted_at=row.started_at,
            args=stored.get("args", []),
            kwargs=stored.get("kwargs", {}),
            backend=self.alias,
            errors=_errors(row, attempts),
            worker_ids=worker_ids,
        )
        if row.status == TaskStatus.COMPLETED and row.result is not None:
            object.__setattr__(result, "_return_value", _decoded(row.result).ok)
        return result


def _django_status(status: str) -> Status:
    from .models import HELD_STATUSES, TaskStatus

    if status == TaskStatus.PENDING:
        return Status.READY
    if status in HELD_STATUSES:
        return Status.RUNNING
    return Status.SUCCESSFUL if status == TaskStatus.COMPLETED else Status.FAILED


def _decoded(stored: Any) -> TaskResult[Any, TaskError]:
    try:
        return decode_result(stored, None)
    except CodecError as exc:
        return TaskResult(err=TaskError(message=str(exc)))


def _failed(code: str | None, message: str, traceback: str = "") -> DjangoTaskError:
    text = f"{code or 'FAILED'}: {message}"
    return DjangoTaskError(
        exception_class_path=f"{TaskFailed.__module__}.{TaskFailed.__qualname__}",
        traceback=f"{traceback}\n{text}" if traceback else text,
    )


def _errors(row: Any, attempts: list[Any]) -> list[DjangoTaskError]:
    """One error per failed try; the last one names the exception the task raised, if it raised."""
    from .models import TERMINAL_STATUSES, AttemptOutcome, TaskStatus

    errors = [
        _failed(a.error_code, a.error_message, a.error_traceback)
        for a in attempts
        if a.outcome in (AttemptOutcome.FAILED, AttemptOutcome.WORKER_LOST)
    ]
    if row.status not in TERMINAL_STATUSES or row.status == TaskStatus.COMPLETED:
        return errors
    error = _decoded(row.result).err if row.result is not None else None
    raised = error.exception if error is not None and isinstance(error.exception, dict) else None
    if raised and raised.get("type") and raised.get("module"):
        final = DjangoTaskError(
            exception_class_path=f"{raised['module']}.{raised['type']}", traceback=raised.get("traceback", "")
        )
    else:
        final = _failed(row.error_code, row.error_message, row.error_traceback)
    if errors and attempts[-1].outcome == AttemptOutcome.FAILED:
        errors[-1] = final
    else:
        errors.append(final)
    return errors


def _django_task(name: str) -> DjangoTask[..., Any] | None:
    """The Django task stored under `name`, importing its module if this process has not yet."""
    if name not in _django_tasks:
        try:
            found = import_string(name)
        except ImportError:
            return None
        # Importing runs the @task decorator, which registers it; anything else is not ours.
        if not isinstance(found, DjangoTask) or found.module_path != name:
            return None
    return _django_tasks.get(name)


def _register(task: DjangoTask[..., Any]) -> None:
    """Make `task` a horsies task named by its module path, so the worker can run it."""
    name = task.module_path
    known = _django_tasks.get(name)
    if known is not None and known.func is task.func:
        return
    _django_tasks[name] = task
    default_app.task(name, _runner(name, task.func))


def _runner(name: str, func: Callable[..., Any]) -> Callable[[list[Any], dict[str, Any]], TaskResult[Any, TaskError]]:
    def run(args: list[Any], kwargs: dict[str, Any]) -> TaskResult[Any, TaskError]:
        return _run(name, args, kwargs)

    # Registered under the function's own name, so a second registration (from `.using()`, or a
    # module imported twice) is seen as the same task and a different function as a clash.
    run.__module__ = func.__module__
    run.__qualname__ = func.__qualname__
    run.__doc__ = func.__doc__
    return run


def _run(name: str, args: list[Any], kwargs: dict[str, Any]) -> TaskResult[Any, TaskError]:
    """Run a Django task in the worker the way Django's immediate backend does, signals included."""
    from .worker.execute import current_task

    task = _django_tasks[name]
    backend = task_backends[task.backend]
    context = current_task()
    result = _running_result(backend, task, context.task_id if context else None, args, kwargs)
    _send_robust(task_started, type(backend), result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = normalize_json(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # recorded by the worker like any task's exception
        import traceback

        object.__setattr__(result, "finished_at", timezone.now())
        result.errors.append(
            DjangoTaskError(
                exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback="".join(traceback.format_exception(exc)),
            )
        )
        object.__setattr__(result, "status", Status.FAILED)
        _send_robust(task_finished, type(backend), result)
        raise
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "status", Status.SUCCESSFUL)
    _send_robust(task_finished, type(backend), result)
    return TaskResult(ok=value)


def _running_result(
    backend: BaseTaskBackend, task: DjangoTask[..., Any], task_id: str | None, args: list[Any], kwargs: dict[str, Any]
) -> DjangoTaskResult[Any, Any]:
    """The task's result as it runs: read from its row in a worker, made up when called directly."""
    if task_id is not None and isinstance(backend, HorsiesBackend):
        try:
            return backend.get_result(task_id)
        except TaskResultDoesNotExist:
            pass
    now: datetime = timezone.now()
    return DjangoTaskResult(
        task=task,
        id=task_id or uuid.uuid4().hex,
        status=Status.RUNNING,
        enqueued_at=now,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=backend.alias,
        errors=[],
        worker_ids=[],
    )


__all__ = ["EnqueueFailed", "HorsiesBackend", "TaskFailed", "to_django_priority", "to_horsies_priority"]
