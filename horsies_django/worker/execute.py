"""Run one claimed task and turn whatever happens into a stored outcome. Never raises."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..app import Horsies
from ..broker import ClaimedTask
from ..types.codec import CodecError, dumps, encode_error, encode_result_json
from ..types.codes import BuiltInTaskCode, ContractCode, OperationalErrorCode
from ..types.results import TaskError, TaskResult

logger = logging.getLogger("horsies_django.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run produced, encoded and ready to store."""

    ok: bool
    result_json: str
    error_code: str | None = None
    error_message: str = ""
    error_traceback: str = ""


def failure(
    code: BuiltInTaskCode | str, message: str, *, exception: BaseException | None = None, data: Any = None
) -> Outcome:
    exception_info = None
    formatted = ""
    if exception is not None:
        formatted = "".join(traceback.format_exception(exception))
        exception_info = {
            "type": type(exception).__qualname__,
            "module": type(exception).__module__,
            "message": str(exception),
            "traceback": formatted,
        }
    error = TaskError(error_code=code, message=message, data=data, exception=exception_info)
    return Outcome(
        ok=False,
        result_json=dumps({"err": encode_error(error)}),
        error_code=str(code),
        error_message=message,
        error_traceback=formatted,
    )


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a running task may want to know about itself (see `current_task()`)."""

    task_id: str
    name: str
    attempt: int
    claim_token: int


_current: ContextVar[TaskContext | None] = ContextVar("horsies_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task this code runs in, or None outside a worker."""
    return _current.get()


def execute(app: Horsies, claimed: ClaimedTask) -> Outcome:
    """Decode the arguments, call the function, check and encode what it returned."""
    context = TaskContext(
        task_id=claimed.id, name=claimed.name, attempt=claimed.attempt, claim_token=claimed.claim_token
    )
    token = _current.set(context)
    try:
        return _execute(app, claimed)
    finally:
        _current.reset(token)


def _execute(app: Horsies, claimed: ClaimedTask) -> Outcome:
    task = app.get_task(claimed.name)
    if task is None:
        return failure(
            OperationalErrorCode.WORKER_RESOLUTION_ERROR,
            f"no task named {claimed.name!r} is registered in this worker (is its app's tasks.py installed? "
            "A worker started before the task was added must be restarted, or run with --reload)",
        )
    try:
        arguments = task.signature.decode_arguments(claimed.arguments)
    except CodecError as exc:
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"stored arguments do not fit task {claimed.name!r}: {exc}",
        )
    try:
        returned = task.fn(**arguments)
        if inspect.iscoroutine(returned):
            returned = asyncio.run(returned)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a task must not end the worker it runs in
        logger.info("task raised id=%s name=%s: %r", claimed.id, claimed.name, exc)
        return failure(
            task.code_for_exception(exc),
            f"{type(exc).__name__}: {exc}",
            exception=exc,
            data={"exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}"},
        )
    if not isinstance(returned, TaskResult):
        return failure(
            ContractCode.RETURN_TYPE_MISMATCH,
            f"task {claimed.name!r} returned {type(returned).__name__}, not a TaskResult",
        )
    if returned.is_ok():
        try:
            returned = TaskResult(ok=task.signature.ok_adapter.validate_python(returned.unwrap()))
        except Exception as exc:
            return failure(
                ContractCode.RETURN_TYPE_MISMATCH,
                f"task {claimed.name!r} returned an ok value that does not fit its declared type: {exc}",
            )
    try:
        envelope = encode_result_json(returned, task.signature.ok_adapter)
    except CodecError as exc:
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"the result of task {claimed.name!r} cannot be stored: {exc}",
        )
    if returned.is_ok():
        return Outcome(ok=True, result_json=envelope)
    error = returned.unwrap_err()
    exception = error.exception or {}
    return Outcome(
        ok=False,
        result_json=envelope,
        error_code=None if error.error_code is None else str(error.error_code),
        error_message=error.message or "",
        error_traceback=exception.get("traceback", ""),
    )
