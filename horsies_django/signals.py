"""Django signals for what happens to tasks and workers. See docs/signals.md for each one's arguments.

    from django.dispatch import receiver
    from horsies_django.signals import task_failed

    @receiver(task_failed)
    def page_someone(sender, task_id, task_name, error, **kwargs): ...

Every signal is sent with `send_robust`: a receiver that raises is logged (Django logs it on the
"django.dispatch" logger) and never breaks a send or the worker. Worker-side signals are sent
from the worker's main process, after the outcome is stored (so a receiver reads the final row).
With no receiver connected, sending costs one attribute check.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.dispatch import Signal

from .types.codec import CodecError, decode_result, loads
from .types.codes import builtin_code
from .types.results import TaskError, TaskResult

if TYPE_CHECKING:
    from .app import TaskFunction
    from .broker import ClaimedTask, Finish, NewTask
    from .worker.runner import Worker

logger = logging.getLogger("horsies_django.signals")

task_sent = Signal()
"""A send wrote a task. sender: the TaskFunction; task_id, task_name, queue_name, priority, run_at."""

task_started = Signal()
"""A worker claimed a task and started it. sender: the Worker; task_id, task_name, attempt, worker_id."""

task_finished = Signal()
"""A task ended in a worker, well or not. sender: the Worker; task_id, task_name, queue_name,
status ("COMPLETED", "FAILED", or "EXPIRED" for a task ended by maintenance), result (the
TaskResult), attempt, worker_id, enqueued_at, started_at, finished_at."""

task_retried = Signal()
"""A try failed and its RetryPolicy runs it again. sender: the Worker; task_id, task_name,
queue_name, error (TaskError), attempt, run_at, worker_id."""

task_failed = Signal()
"""A task ended FAILED. Sent just before task_finished. sender: the Worker; task_id, task_name,
queue_name, error (TaskError), traceback (str, "" when nothing was raised), attempt, worker_id,
enqueued_at, started_at, finished_at."""

worker_started = Signal()
"""A worker registered and is about to claim. sender: the Worker; worker_id."""

worker_stopped = Signal()
"""A worker stopped. sender: the Worker; worker_id, stats (WorkerStats)."""


def send(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` to every receiver. Django's `send_robust` logs what a receiver raises (on the
    "django.dispatch" logger, with its traceback) and carries on with the next one."""
    if signal.receivers:
        signal.send_robust(sender, **kwargs)


def sent(task: TaskFunction[Any, Any], rows: Sequence[NewTask]) -> None:
    """Hook in the send path: the rows were written."""
    if not task_sent.receivers:
        return
    for row in rows:
        send(
            task_sent,
            task,
            task_id=str(row.id),
            task_name=row.name,
            queue_name=row.queue_name,
            priority=row.priority,
            run_at=row.run_at,
        )


def claimed(worker: Worker, tasks: Sequence[ClaimedTask]) -> None:
    """Hook in the worker: these tasks were claimed and handed to the pool."""
    if not task_started.receivers:
        return
    for task in tasks:
        send(
            task_started,
            worker,
            task_id=task.id,
            task_name=task.name,
            attempt=task.attempt,
            worker_id=worker.worker_id,
        )


def finished(worker: Worker, finishes: Sequence[Finish], applied: Collection[str]) -> None:
    """Hook in the worker: `finishes` were written; those in `applied` took effect."""
    if not (task_finished.receivers or task_failed.receivers or task_retried.receivers):
        return
    from .models import TaskStatus

    done = [f for f in finishes if f.task_id in applied and not f.release and not f.crash]
    if not done:
        return
    try:
        rows = _rows(worker, [f.task_id for f in done])
    except DatabaseError as exc:  # The outcome is stored; a lost notification must not stop the worker.
        logger.warning("signals not sent for %d task(s): database error: %s", len(done), exc)
        return
    for finish in done:
        name, queue_name, enqueued_at = rows.get(finish.task_id, ("", "", None))
        common: dict[str, Any] = {
            "task_id": finish.task_id,
            "task_name": name,
            "queue_name": queue_name,
            "attempt": finish.attempt,
            "worker_id": finish.worker_id,
        }
        if finish.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            send(task_retried, worker, error=_error(finish), run_at=finish.run_at, **common)
            continue
        times = {"enqueued_at": enqueued_at, "started_at": finish.started_at, "finished_at": finish.finished_at}
        result = _result(worker, name, finish)
        if finish.status == TaskStatus.FAILED:
            error = result.err if isinstance(result.err, TaskError) else _error(finish)
            send(task_failed, worker, error=error, traceback=finish.error_traceback, **common, **times)
        send(task_finished, worker, status=finish.status, result=result, **common, **times)


def ended_in_maintenance(worker: Worker, task_ids: Sequence[str]) -> None:
    """Hook in the worker's maintenance: tasks it ended without running them, expired (never
    started before `good_until`) or FAILED as WORKER_CRASHED (their worker was lost too often)."""
    if not task_ids or not (task_finished.receivers or task_failed.receivers):
        return
    from .models import Task, TaskStatus

    try:
        rows = list(
            Task.objects.using(worker._broker.alias)
            .filter(pk__in=[uuid.UUID(i) for i in task_ids])
            .values_list(
                "id", "name", "queue_name", "status", "attempt", "worker_id", "enqueued_at", "started_at",
                "finished_at", "result", "error_code", "error_message",
            )
        )  # fmt: skip
    except DatabaseError as exc:  # the tasks are ended; a lost notification must not stop the worker
        logger.warning("signals not sent for %d task(s): database error: %s", len(task_ids), exc)
        return
    for pk, name, queue_name, status, attempt, worker_id, enqueued_at, started_at, finished_at, *outcome in rows:
        stored, code, message = outcome
        error = _task_error(code, message or "")
        common: dict[str, Any] = {
            "task_id": str(pk), "task_name": name, "queue_name": queue_name, "attempt": attempt,
            "worker_id": worker_id or "", "enqueued_at": enqueued_at, "started_at": started_at,
            "finished_at": finished_at,
        }  # fmt: skip
        if status == TaskStatus.FAILED:
            send(task_failed, worker, error=error, traceback="", **common)
        send(task_finished, worker, status=status, result=_decoded(worker, name, stored, error), **common)


def _rows(worker: Worker, ids: list[str]) -> dict[str, tuple[str, str, Any]]:
    from .models import Task

    found = Task.objects.using(worker._broker.alias).filter(pk__in=[uuid.UUID(i) for i in ids])
    return {
        str(pk): (name, queue_name, enqueued_at)
        for pk, name, queue_name, enqueued_at in found.values_list("id", "name", "queue_name", "enqueued_at")
    }


def _task_error(code: str | None, message: str) -> TaskError:
    return TaskError(error_code=builtin_code(code) or code if code else None, message=message)


def _error(finish: Finish) -> TaskError:
    return _task_error(finish.error_code, finish.error_message)


def _decoded(worker: Worker, name: str, envelope: Any, error: TaskError) -> TaskResult[Any, TaskError]:
    """A stored result decoded with the task's types; `error` if it does not decode."""
    definition = worker.app.get_task(name)
    try:
        return decode_result(envelope, definition.signature.ok_adapter if definition else None)
    except CodecError:
        return TaskResult(err=error)


def _result(worker: Worker, name: str, finish: Finish) -> TaskResult[Any, TaskError]:
    return _decoded(worker, name, loads(finish.result_json or "null"), _error(finish))


__all__ = [
    "task_failed",
    "task_finished",
    "task_retried",
    "task_sent",
    "task_started",
    "worker_started",
    "worker_stopped",
]
