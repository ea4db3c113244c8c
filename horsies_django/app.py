"""The producer side: `Horsies` registers tasks; a task sends itself; a handle waits for its result."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from asgiref.sync import sync_to_async
from django.utils import timezone

from . import signals
from .conf import DEFAULT_QUEUE, SettingsError, get_settings
from .types.codec import CodecError, TaskDefinitionError, TaskSignature, decode_result
from .types.codes import (
    BUILTIN_CODES,
    BuiltInTaskCode,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskSendErrorCode,
)
from .types.results import Err, Ok, Result, TaskError, TaskResult, TaskSendError, TaskSendResult
from .types.retry import RateLimit, RetryPolicy

if TYPE_CHECKING:
    from .broker import Broker, NewTask

logger = logging.getLogger("horsies_django")

P = ParamSpec("P")
T = TypeVar("T")

MAX_DELAY_S = 10 * 365 * 86_400

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "EXPIRED"})


@dataclass(frozen=True, slots=True)
class TaskAttemptInfo:
    number: int
    outcome: str
    worker_id: str
    started_at: datetime | None
    finished_at: datetime | None
    error_code: str | None
    error_message: str


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of a task's row, for code that wants more than the result."""

    task_id: str
    task_name: str
    status: str
    queue_name: str
    priority: int
    attempt: int
    retry_count: int
    max_retries: int
    enqueued_at: datetime
    run_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    good_until: datetime | None
    worker_id: str | None
    error_code: str | None
    error_message: str
    attempts: tuple[TaskAttemptInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-send choices, kept apart from the task's own arguments (see `with_options`)."""

    queue_name: str | None = None
    priority: int | None = None
    good_until: datetime | None = None
    idempotency_key: str | None = None


def _broker() -> Broker:
    from .broker import get_broker

    return get_broker()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _send_on_commit_by_default() -> bool:
    try:
        return get_settings().send_on_commit
    except SettingsError:
        return False  # send() then reports the bad setting as VALIDATION_FAILED


def _send_error(code: TaskSendErrorCode, message: str, *, retryable: bool = False) -> Err[TaskSendError]:
    return Err(TaskSendError(code=code, message=message, retryable=retryable))


class TaskHandle(Generic[T]):
    """A sent task: `get()` waits for its `TaskResult`; `info()` reads its row."""

    __slots__ = ("task_id", "_task", "_app")

    def __init__(self, task_id: str, task: TaskFunction[Any, T] | None = None, *, app: Horsies | None = None) -> None:
        self.task_id = task_id
        self._task = task
        self._app = app  # a rebuilt handle finds its task's types on first read

    def __repr__(self) -> str:
        return f"TaskHandle(task_id={self.task_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def _poll(self) -> TaskResult[T, TaskError] | None:
        """One look at the row: the final result, or None while the task has not ended."""
        task_uuid = _parse_task_id(self.task_id)
        if task_uuid is None:
            return _retrieval_error(RetrievalCode.TASK_NOT_FOUND, f"{self.task_id!r} is not a task id")
        try:
            outcome = _broker().fetch_outcome(task_uuid)
        except Exception as exc:
            return _broker_error(self.task_id, exc)
        if outcome is None:
            return _retrieval_error(RetrievalCode.TASK_NOT_FOUND, f"no task with id {self.task_id}")
        if outcome.status not in TERMINAL:
            return None
        if outcome.result is None:
            return _retrieval_error(
                RetrievalCode.RESULT_NOT_AVAILABLE, f"task {self.task_id} ended {outcome.status} with no result"
            )
        task = self._task
        if task is None and self._app is not None:
            try:
                name = _broker_name_lookup(self.task_id)
            except Exception as exc:
                return _broker_error(self.task_id, exc)
            task = self._task = self._app.get_task(name) if name else None
        try:
            return decode_result(outcome.result, task.signature.ok_adapter if task else None)
        except CodecError as exc:
            return TaskResult(
                err=TaskError(error_code=OperationalErrorCode.RESULT_DESERIALIZATION_ERROR, message=str(exc))
            )

    def get(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """Wait up to `timeout_ms` (None: no limit) for the task to end and return its result.

        When the time runs out the result is `RetrievalCode.WAIT_TIMEOUT`; the task may still run.
        On PostgreSQL the wait listens for the worker's NOTIFY; elsewhere it polls, briefly at first.
        """
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        try:
            broker = _broker()
            waiter = broker.result_waiter(self.task_id)
            wait = waiter.__enter__()
        except Exception as exc:
            return _broker_error(self.task_id, exc)
        try:
            # Even with notifications, look again now and then: a NOTIFY is a hint, not a promise.
            delay, longest = (0.002, 0.05) if broker.default_poll_interval_s < 1 else (1.0, 1.0)
            while True:
                result = self._poll()
                if result is not None:
                    return result
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return self._timed_out(timeout_ms)
                try:
                    wait(delay if remaining is None else min(delay, remaining))
                except Exception as exc:
                    return _broker_error(self.task_id, exc)
                delay = min(delay * 1.5, longest)
        finally:
            waiter.__exit__(None, None, None)

    async def get_async(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """`get()` for an event loop: waits without holding a thread."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        delay = 0.002
        poll = sync_to_async(self._poll, thread_sensitive=True)
        while True:
            result = await poll()
            if result is not None:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return self._timed_out(timeout_ms)
            pause = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, 0.05)

    def _timed_out(self, timeout_ms: int | None) -> TaskResult[T, TaskError]:
        return _retrieval_error(
            RetrievalCode.WAIT_TIMEOUT, f"task {self.task_id} did not finish within {timeout_ms} ms; it may still run"
        )

    def info(self, include_attempts: bool = False) -> Result[TaskInfo | None, TaskError]:
        """The task's row as a `TaskInfo`; `Ok(None)` for an unknown id; `Err` on a database error."""
        from .models import Task

        task_uuid = _parse_task_id(self.task_id)
        if task_uuid is None:
            return Ok(None)
        try:
            row = Task.objects.using(get_settings().database).filter(pk=task_uuid).first()
            if row is None:
                return Ok(None)
            attempts: tuple[TaskAttemptInfo, ...] = ()
            if include_attempts:
                attempts = tuple(
                    TaskAttemptInfo(
                        number=a.number,
                        outcome=a.outcome,
                        worker_id=a.worker_id,
                        started_at=a.started_at,
                        finished_at=a.finished_at,
                        error_code=a.error_code,
                        error_message=a.error_message,
                    )
                    for a in row.attempts.order_by("number")
                )
        except Exception as exc:
            return Err(TaskError(error_code=OperationalErrorCode.BROKER_ERROR, message=f"database error: {exc}"))
        return Ok(
            TaskInfo(
                task_id=str(row.id),
                task_name=row.name,
                status=row.status,
                queue_name=row.queue_name,
                priority=row.priority,
                attempt=row.attempt,
                retry_count=max(row.attempt - 1 - row.crash_reruns, 0),
                max_retries=row.max_retries,
                enqueued_at=row.enqueued_at,
                run_at=row.run_at,
                claimed_at=row.claimed_at,
                started_at=row.started_at,
                finished_at=row.finished_at,
                good_until=row.good_until,
                worker_id=row.worker_id,
                error_code=row.error_code,
                error_message=row.error_message,
                attempts=attempts,
            )
        )

    def cancel(self) -> bool:
        """Cancel the task if it has not ended; True if this call cancelled it. See `Horsies.cancel`."""
        return cancel_tasks([self.task_id]) == [self.task_id]

    async def cancel_async(self) -> bool:
        return await sync_to_async(self.cancel, thread_sensitive=True)()

    async def info_async(self, include_attempts: bool = False) -> Result[TaskInfo | None, TaskError]:
        return await sync_to_async(self.info, thread_sensitive=True)(include_attempts)


def cancel_tasks(task_ids: list[str]) -> list[str]:
    """Cancel the tasks among `task_ids` that have not ended; return the ids cancelled.

    A pending task never runs. A running task's worker stops it at its next heartbeat, and whatever
    it returns afterwards is discarded. Its result is `OutcomeCode.TASK_CANCELLED`.
    """
    from .types.codec import encode_error

    ids = [u for u in (_parse_task_id(t) for t in task_ids) if u is not None]
    error = TaskError(error_code=OutcomeCode.TASK_CANCELLED, message="cancelled")
    try:
        return _broker().cancel(ids, now=timezone.now(), result={"err": encode_error(error)}, message="cancelled")
    except Exception as exc:  # Like get(): report, do not raise; nothing was cancelled.
        logger.warning("cancel failed task_ids=%s: %s", task_ids, exc)
        return []


def _broker_error(task_id: str, exc: Exception) -> TaskResult[Any, TaskError]:
    logger.warning("result lookup failed task_id=%s: %s", task_id, exc)
    return TaskResult(err=TaskError(error_code=OperationalErrorCode.BROKER_ERROR, message=f"database error: {exc}"))


def _parse_task_id(task_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(task_id)
    except (ValueError, TypeError, AttributeError):
        return None


def _retrieval_error(code: RetrievalCode, message: str) -> TaskResult[Any, TaskError]:
    return TaskResult(err=TaskError(error_code=code, message=message))


def _broker_name_lookup(task_id: str) -> str | None:
    from .models import Task

    if _parse_task_id(task_id) is None:
        return None
    return Task.objects.using(get_settings().database).filter(pk=task_id).values_list("name", flat=True).first()


class TaskFunction(Generic[P, T]):
    """A registered task. Calling it runs the function here; `send()` queues it for a worker."""

    def __init__(
        self,
        *,
        app: Horsies,
        name: str,
        fn: Callable[P, TaskResult[T, TaskError]],
        queue_name: str,
        signature: TaskSignature,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        exception_mapper: Mapping[type[BaseException], str] | None = None,
        rate_limit: RateLimit | None = None,
        options: SendOptions = SendOptions(),
    ) -> None:
        self.app = app
        self.name = name
        self.fn = fn
        self.queue_name = queue_name
        self.signature = signature
        self.retry_policy = retry_policy
        self.timeout_ms = timeout_ms
        self.exception_mapper = dict(exception_mapper or {})
        self.rate_limit = rate_limit
        self.options = options
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name!r} queue={self.queue_name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult[T, TaskError]:
        return self.fn(*args, **kwargs)

    def with_options(
        self,
        *,
        queue_name: str | None = None,
        priority: int | None = None,
        good_until: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> TaskFunction[P, T]:
        """A copy of this task whose sends use these options (like Django's `Task.using()`).

        `idempotency_key`: while a task of this name with the same key is pending or running, or
        ended less than HORSIES['IDEMPOTENCY_WINDOW_S'] ago (a day by default), a send returns its
        handle instead of queueing another.
        """
        current = self.options
        options = SendOptions(
            queue_name=current.queue_name if queue_name is None else queue_name,
            priority=current.priority if priority is None else priority,
            good_until=current.good_until if good_until is None else good_until,
            idempotency_key=current.idempotency_key if idempotency_key is None else idempotency_key,
        )
        bound = copy.copy(self)
        bound.options = options
        return bound

    def code_for_exception(self, exc: BaseException) -> BuiltInTaskCode | str:
        """The error code for an exception the task raised: the nearest class in the task's
        `exception_mapper`, then in `HORSIES['EXCEPTION_MAPPER']`, else UNHANDLED_EXCEPTION."""
        for mapper in (self.exception_mapper, get_settings().exception_mapper):
            for cls in type(exc).__mro__:
                if cls in mapper:
                    code = mapper[cls]
                    return BUILTIN_CODES.get(code, code)
        return OperationalErrorCode.UNHANDLED_EXCEPTION

    # -- sending ------------------------------------------------------------------------

    def _new_task(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], delay_s: float
    ) -> Result[NewTask, TaskSendError]:
        from .broker import NewTask
        from .models import MAX_PRIORITY, MIN_PRIORITY

        try:
            settings = get_settings()
        except SettingsError as exc:  # `manage.py check` reports it too, unless checks were skipped
            return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"HORSIES setting: {exc} ({exc.hint})")
        try:
            arguments_json = self.signature.encode_arguments_json(args, kwargs)
        except CodecError as exc:
            return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"task {self.name!r}: {exc}")
        size = len(arguments_json.encode())
        if size > settings.max_payload_bytes:
            return _send_error(
                TaskSendErrorCode.PAYLOAD_TOO_LARGE,
                f"task {self.name!r}: arguments are {size} bytes; HORSIES['MAX_PAYLOAD_BYTES'] is "
                f"{settings.max_payload_bytes}",
            )
        queue_name = self.options.queue_name or self.queue_name
        unknown = settings.unknown_queue(queue_name)
        if unknown:
            return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"task {self.name!r}: {unknown}")
        key = self.options.idempotency_key
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: idempotency_key must be a string of 1 to 255 characters",
            )
        priority = self.options.priority if self.options.priority is not None else settings.queue_priority(queue_name)
        if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
                f"got {priority!r}",
            )
        good_until = self.options.good_until
        if good_until is not None and timezone.is_naive(good_until):
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED, f"task {self.name!r}: good_until must be timezone-aware"
            )
        now = timezone.now()
        return Ok(
            NewTask(
                id=uuid.uuid4(),
                name=self.name,
                queue_name=queue_name,
                priority=priority,
                arguments_json=arguments_json,
                run_at=now + timedelta(seconds=delay_s),
                enqueued_at=now,
                good_until=good_until,
                max_retries=self.retry_policy.max_retries if self.retry_policy else 0,
                idempotency_key=key,
            )
        )

    def _enqueue(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], delay_s: float
    ) -> TaskSendResult[TaskHandle[T]]:
        match self._enqueue_rows([(args, kwargs)], delay_s):
            case Ok(handles):
                return Ok(handles[0])
            case Err() as error:
                return error

    def _enqueue_rows(
        self, calls: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]], delay_s: float
    ) -> TaskSendResult[list[TaskHandle[T]]]:
        rows: list[NewTask] = []
        for index, (args, kwargs) in enumerate(calls):
            match self._new_task(args, kwargs, delay_s):
                case Ok(row):
                    rows.append(row)
                case Err(error):
                    if len(calls) == 1:
                        return Err(error)
                    return Err(dataclasses.replace(error, message=f"call {index}: {error.message}"))
        if rows[0].idempotency_key is not None and len(rows) > 1:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: an idempotency_key names one task; send_many() cannot share it",
            )
        try:
            if rows[0].idempotency_key is not None:
                window = timedelta(seconds=get_settings().idempotency_window_s)
                existing_id = _broker().enqueue_idempotent(rows[0], ended_after=timezone.now() - window)
                signals.sent(self, rows if existing_id == str(rows[0].id) else [])
                return Ok([TaskHandle(existing_id, self)])
            _broker().enqueue_many(rows)
        except Exception as exc:
            logger.warning("enqueue failed task=%s count=%d: %s", self.name, len(rows), exc)
            return Err(
                TaskSendError(
                    code=TaskSendErrorCode.ENQUEUE_FAILED,
                    message=f"task {self.name!r}: database error: {exc}",
                    retryable=True,
                    task_id=str(rows[0].id) if len(rows) == 1 else None,
                )
            )
        signals.sent(self, rows)
        return Ok([TaskHandle(str(row.id), self) for row in rows])

    def _async_context(self, method: str) -> Err[TaskSendError]:
        return _send_error(
            TaskSendErrorCode.ASYNC_CONTEXT,
            f"task {self.name!r}: {method}() blocks on the database; inside an event loop use "
            f"'await task.{method}_async(...)'",
        )

    def send_many(self, calls: Sequence[tuple[Any, ...] | Mapping[str, Any]]) -> TaskSendResult[list[TaskHandle[T]]]:
        """Queue many calls at once: each item is a tuple of positional arguments or a dict of
        keyword arguments. All or nothing: one bad call, and nothing is written."""
        if _in_event_loop():
            return self._async_context("send_many")
        return self._send_many(calls)

    def _send_many(self, calls: Sequence[tuple[Any, ...] | Mapping[str, Any]]) -> TaskSendResult[list[TaskHandle[T]]]:
        bound: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = []
        for index, call in enumerate(calls):
            if isinstance(call, tuple):
                bound.append((call, {}))
            elif isinstance(call, Mapping):
                bound.append(((), call))
            else:
                return _send_error(
                    TaskSendErrorCode.VALIDATION_FAILED,
                    f"task {self.name!r}: call {index} must be a tuple of arguments or a dict of keyword "
                    f"arguments, got {type(call).__name__}",
                )
        if not bound:
            return Ok([])
        return self._enqueue_rows(bound, 0)

    async def send_many_async(
        self, calls: Sequence[tuple[Any, ...] | Mapping[str, Any]]
    ) -> TaskSendResult[list[TaskHandle[T]]]:
        return await sync_to_async(self._send_many, thread_sensitive=True)(calls)

    def send(self, *args: P.args, **kwargs: P.kwargs) -> TaskSendResult[TaskHandle[T]]:
        """Queue the task now. Returns `Ok(TaskHandle)` or `Err(TaskSendError)`; writes nothing on error."""
        if _in_event_loop():
            return self._async_context("send")
        if _send_on_commit_by_default():
            return self._send_on_commit(args, kwargs)
        return self._enqueue(args, kwargs, 0)

    def send_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> TaskSendResult[TaskHandle[T]]:
        """Check and encode the call now; write the task once the current transaction commits
        (`transaction.on_commit`), at once outside a transaction. A rollback sends nothing.

        The handle's id is known at once, but its row exists only after the commit. A write that
        fails after the commit is logged, since the caller has moved on."""
        if _in_event_loop():
            return self._async_context("send_on_commit")
        return self._send_on_commit(args, kwargs)

    def _send_on_commit(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> TaskSendResult[TaskHandle[T]]:
        from django.db import transaction

        if self.options.idempotency_key is not None:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: an idempotency_key is resolved as the row is written; use send()",
            )
        match self._new_task(args, kwargs, 0):
            case Ok(row):
                transaction.on_commit(lambda: self._write_committed(row), using=get_settings().database)
                return Ok(TaskHandle(str(row.id), self))
            case Err() as error:
                return error

    def _write_committed(self, row: NewTask) -> None:
        try:
            _broker().enqueue_many([row])
        except Exception as exc:  # Raising here would hit the code that committed, not the sender.
            logger.error("send_on_commit: task %s id=%s was not written after the commit: %s", self.name, row.id, exc)
            return
        signals.sent(self, [row])

    def schedule(self, delay_seconds: float, *args: P.args, **kwargs: P.kwargs) -> TaskSendResult[TaskHandle[T]]:
        """Queue the task to run no earlier than `delay_seconds` from now."""
        if (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, (int, float))
            or not 0 <= delay_seconds <= MAX_DELAY_S
        ):
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: delay_seconds must be a number from 0 to {MAX_DELAY_S} (ten years), "
                f"got {delay_seconds!r}",
            )
        if _in_event_loop():
            return self._async_context("schedule")
        return self._enqueue(args, kwargs, delay_seconds)

    async def send_async(self, *args: P.args, **kwargs: P.kwargs) -> TaskSendResult[TaskHandle[T]]:
        return await sync_to_async(self._enqueue, thread_sensitive=True)(args, kwargs, 0)

    async def schedule_async(
        self, delay_seconds: float, *args: P.args, **kwargs: P.kwargs
    ) -> TaskSendResult[TaskHandle[T]]:
        return await sync_to_async(self.schedule, thread_sensitive=True)(delay_seconds, *args, **kwargs)


class Horsies:
    """A registry of tasks. `horsies_django.app` is the project-wide instance."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskFunction[Any, Any]] = {}
        self._periodic: dict[str, dict[str, Any]] = {}

    @overload
    def task(
        self,
        name: str,
        *,
        queue_name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        exception_mapper: Mapping[type[BaseException], str] | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[Callable[P, TaskResult[T, TaskError]]], TaskFunction[P, T]]: ...

    @overload
    def task(
        self,
        name: str,
        fn: Callable[P, TaskResult[T, TaskError]],
        *,
        queue_name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        exception_mapper: Mapping[type[BaseException], str] | None = None,
        rate_limit: str | None = None,
    ) -> TaskFunction[P, T]: ...

    def task(
        self,
        name: str,
        fn: Any = None,
        *,
        queue_name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        exception_mapper: Mapping[type[BaseException], str] | None = None,
        rate_limit: str | None = None,
    ) -> Any:
        """Register a function as task `name` on `queue_name` (default: "default").

        `retry_policy` retries listed error codes; `timeout_ms` stops a run that takes longer
        (TASK_TIMEOUT); `exception_mapper` turns raised exception classes into error codes.
        """

        def register(func: Callable[P, TaskResult[T, TaskError]]) -> TaskFunction[P, T]:
            if not isinstance(name, str) or not name:
                raise TaskDefinitionError(f"task name must be a non-empty string, got {name!r}")
            if isinstance(func, TaskFunction):
                raise TaskDefinitionError(f"task {name!r}: {func!r} is already a task")
            existing = self._tasks.get(name)
            if existing is not None and not _same_function(existing.fn, func):
                raise TaskDefinitionError(
                    f"task name {name!r} is already used by {_where(existing.fn)}; {_where(func)} must use another name"
                )
            _check_task_options(name, func, retry_policy, timeout_ms, exception_mapper)
            limit = _rate_limit(name, func, rate_limit)
            _check_queue(name, func, queue_name or DEFAULT_QUEUE)
            task = TaskFunction(
                app=self,
                name=name,
                fn=func,
                queue_name=queue_name or DEFAULT_QUEUE,
                signature=TaskSignature.of(func),
                retry_policy=retry_policy,
                timeout_ms=timeout_ms,
                exception_mapper=exception_mapper,
                rate_limit=limit,
            )
            self._tasks[name] = task
            return task

        return register if fn is None else register(fn)

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
    ) -> Callable[[TaskFunction[P, T]], TaskFunction[P, T]]:
        """Run a registered task on a schedule, like an entry of HORSIES['SCHEDULES']:

            @app.periodic(cron="*/5 * * * *")
            @app.task("poll_feeds")
            def poll_feeds() -> TaskResult[int, TaskError]: ...

        The entry is checked with the settings' schedules (see horsies_django.scheduler).
        """

        def register(task: TaskFunction[P, T]) -> TaskFunction[P, T]:
            if not isinstance(task, TaskFunction):
                raise TaskDefinitionError(
                    f"@app.periodic goes above @app.task: it needs a registered task, got {task!r}"
                )
            schedule_name = name or task.name
            if schedule_name in self._periodic:
                raise TaskDefinitionError(
                    f"@app.periodic: a schedule named {schedule_name!r} exists already; pass name=... to add another"
                )
            if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
                raise TaskDefinitionError(
                    f"@app.periodic {schedule_name!r}: args must be a list or tuple, got {args!r}"
                )
            spec: dict[str, Any] = {"task": task.name, "args": list(args), "kwargs": dict(kwargs or {})}
            spec.update({"timezone": timezone, "catch_up": catch_up})
            if cron is not None:
                spec["cron"] = cron
            if every is not None:
                spec["every"] = every
            self._periodic[schedule_name] = spec
            return task

        return register

    def periodic_schedules(self) -> dict[str, dict[str, Any]]:
        """Schedules declared with `@app.periodic`, by name, in the form of HORSIES['SCHEDULES']."""
        return dict(self._periodic)

    def list_tasks(self) -> list[str]:
        return sorted(self._tasks)

    def get_task(self, name: str) -> TaskFunction[Any, Any] | None:
        return self._tasks.get(name)

    def cancel(self, task_id: str | uuid.UUID) -> bool:
        """Cancel a task by id if it has not ended; True if this call cancelled it."""
        return cancel_tasks([str(task_id)]) == [str(task_id)]

    def get_handle(self, task_id: str | uuid.UUID) -> TaskHandle[Any]:
        """A handle for a task sent elsewhere (another request, another process)."""
        # No database access here, so this works inside an event loop too; the handle looks its
        # task up when it first reads the result.
        return TaskHandle(str(task_id), None, app=self)


def _check_task_options(
    name: str,
    fn: Callable[..., Any],
    retry_policy: object,
    timeout_ms: object,
    exception_mapper: Mapping[Any, Any] | None,
) -> None:
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): retry_policy must be a RetryPolicy")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1):
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): timeout_ms must be a positive whole number")
    for cls, code in (exception_mapper or {}).items():
        if not (isinstance(cls, type) and issubclass(cls, BaseException)) or not isinstance(code, str) or not code:
            raise TaskDefinitionError(
                f"task {name!r} ({_where(fn)}): exception_mapper maps exception classes to error codes, "
                f"got {cls!r}: {code!r}"
            )


def _rate_limit(name: str, fn: Callable[..., Any], spec: str | None) -> RateLimit | None:
    if spec is None:
        return None
    try:
        return RateLimit.parse(spec)
    except ValueError as exc:
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): {exc}") from None


def _check_queue(name: str, fn: Callable[..., Any], queue_name: str) -> None:
    from django.conf import settings

    if not settings.configured:
        return  # the system check (horsies_django.E011) reports it once settings exist
    try:
        unknown = get_settings().unknown_queue(queue_name)
    except SettingsError:
        return  # a bad HORSIES: `manage.py check` reports that, and then this

    if unknown:
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): {unknown}")


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported twice (e.g. under two names) registers the same function again; that is fine.
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    ) or a is b


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)} ({where})"


app = Horsies()


__all__ = ["Horsies", "SendOptions", "TaskFunction", "TaskHandle", "TaskInfo", "TaskAttemptInfo", "app"]
