"""The producer side: `Horsies` registers tasks; a task sends itself; a handle waits for its result."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack, overload

from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError
from django.utils import timezone

from . import signals
from .broker.base import BrokerError
from .conf import DEFAULT_QUEUE, HorsiesSettings, SettingsError, get_settings
from .statuses import ENDED, AttemptOutcome, TaskStatus
from .types.codec import CodecError, TaskDefinitionError, TaskSignature, decode_result, loads
from .types.codes import (
    BUILTIN_CODES,
    BuiltInTaskCode,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskSendErrorCode,
    code_spelling_problem,
)
from .types.ids import new_task_id
from .types.results import Err, Ok, Result, TaskError, TaskResult, TaskSendError, TaskSendPayload, TaskSendResult
from .types.retry import RateLimit, RetryPolicy
from .types.status import TaskAttemptOutcome

if TYPE_CHECKING:
    from .broker import Broker, NewTask
    from .models import TaskStatus
    from .workflows.enums import OnError
    from .workflows.handle import WorkflowHandle
    from .workflows.spec import NodeOptions, SuccessPolicy, TaskNode, WorkflowSpec

logger = logging.getLogger("horsies_django")

P = ParamSpec("P")
T = TypeVar("T")

MAX_DELAY_S = 10 * 365 * 86_400

# Sends are suppressed while task modules are imported (autodiscovery, a worker child's start-up):
# a module-level `send()` would otherwise run once in every process that imports the module.
_suppressed: ContextVar[int] = ContextVar("horsies_sends_suppressed", default=0)


@contextmanager
def suppress_sends() -> Iterator[None]:
    """Inside this block every send returns `Err(TaskSendError(SEND_SUPPRESSED))` and writes
    nothing, as horsies does while it imports task modules. Nests; other threads are unaffected."""
    token = _suppressed.set(_suppressed.get() + 1)
    try:
        yield
    finally:
        _suppressed.reset(token)


def sends_suppressed() -> bool:
    """Whether a send made here now would be suppressed (see `suppress_sends`)."""
    return _suppressed.get() > 0
@dataclass(frozen=True, slots=True)
class TaskAttemptInfo:
    """One try of a task, as `info(include_attempts=True)` lists it (horsies' fields first)."""

    task_id: str
    attempt: int
    outcome: TaskAttemptOutcome
    will_retry: bool  # another try followed, or is waiting to run
    started_at: datetime | None
    finished_at: datetime | None
    error_code: str | None
    error_message: str
    failed_reason: str | None
    worker_id: str
    worker_hostname: str | None
    worker_pid: int | None
    worker_process_name: str | None

    @property
    def number(self) -> int:
        """The attempt's number, 1 for the first try (the name this field first shipped under)."""
        return self.attempt


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of a task's row, with horsies' field names; see `TaskHandle.info()`.

    `enqueued_at` is when the task becomes (or became) ready to claim, later than `sent_at` for
    a scheduled task or one waiting for a retry. `result`, `failed_reason` and `attempts` are None
    unless asked for.
    """

    task_id: str
    task_name: str
    status: TaskStatus
    queue_name: str
    priority: int
    retry_count: int
    max_retries: int
    next_retry_at: datetime | None
    sent_at: datetime
    enqueued_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    worker_hostname: str | None
    worker_pid: int | None
    worker_process_name: str | None
    result: TaskResult[Any, TaskError] | None = None
    failed_reason: str | None = None
    attempts: tuple[TaskAttemptInfo, ...] | None = None
    # horsies_django's own fields.
    attempt: int = 0  # tries started so far, retries and crash re-runs included
    finished_at: datetime | None = None  # when it ended, whatever the status
    good_until: datetime | None = None
    worker_id: str | None = None
    error_code: str | None = None
    error_message: str = ""

    @property
    def run_at(self) -> datetime:
        """`enqueued_at`, under the name this field first shipped with."""
        return self.enqueued_at


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-send choices, kept apart from the task's own arguments (see `with_options`)."""

    queue_name: str | None = None
    priority: int | None = None
    good_until: datetime | str | None = None
    idempotency_key: str | None = None


# The column widths of `models.Task`: longer values would be refused by PostgreSQL at insert time.
MAX_QUEUE_NAME = 100
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A task's send options, checked against the settings they were checked with."""

    settings: HorsiesSettings
    queue_name: str
    priority: int
    good_until: datetime | None
    idempotency_key: str | None
    broker: Broker | None = None  # resolved on the first send that gets this far


def _check_type(option: str, value: object, expected: type | tuple[type, ...]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, expected)):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise TypeError(f"with_options({option}=...) takes {names} or None, got {type(value).__name__}")


def _text_problem(value: str, what: str, longest: int) -> str | None:
    """Why `value` cannot be stored in a text column, or None."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > longest:
        return f"{what} must be at most {longest} characters, got {len(value)}"
    if "\x00" in value:
        return f"{what} must not contain a NUL character (\\x00)"
    try:
        value.encode()
    except UnicodeEncodeError:
        return f"{what} must not contain a lone surrogate"
    return None


def _aware_datetime(value: datetime | str) -> datetime | str:
    """`good_until` as an aware datetime, or why it cannot be one."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return f"good_until must be an ISO 8601 date and time with an offset, got {value[:60]!r}"
        value = parsed
    try:
        naive = timezone.is_naive(value)
    except Exception as exc:  # a tzinfo whose utcoffset() raises
        return f"good_until has a time zone that cannot be read: {type(exc).__name__}"
    if naive:
        return "good_until must be timezone-aware (a naive datetime, or an ISO string without an offset)"
    return value


def _prepare_options(
    name: str, default_queue: str, options: SendOptions, settings: HorsiesSettings
) -> Result[_Prepared, TaskSendError]:
    from .models import MAX_PRIORITY, MIN_PRIORITY

    queue_name = default_queue if options.queue_name is None else options.queue_name
    problem = _text_problem(queue_name, "queue_name", MAX_QUEUE_NAME) or settings.unknown_queue(queue_name)
    if problem:
        return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"task {name!r}: {problem}")
    key = options.idempotency_key
    if key is not None and (problem := _text_problem(key, "idempotency_key", MAX_IDEMPOTENCY_KEY)):
        return _send_error(
            TaskSendErrorCode.VALIDATION_FAILED,
            f"task {name!r}: {problem} (idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters)",
        )
    priority = options.priority if options.priority is not None else settings.queue_priority(queue_name)
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        return _send_error(
            TaskSendErrorCode.VALIDATION_FAILED,
            f"task {name!r}: priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, got {priority!r}",
        )
    good_until = None if options.good_until is None else _aware_datetime(options.good_until)
    if isinstance(good_until, str):
        return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"task {name!r}: {good_until}")
    return Ok(_Prepared(settings, queue_name, priority, good_until, key))


def _shown(value: object) -> str:
    """A value for an error message: numbers as themselves, anything else by its type (its
    `__repr__` is the caller's code, and may raise)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and type(value) in (int, float):
        return repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge int"
    return f"a {type(value).__name__}"


def _safe_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def _enqueue_failed(name: str, rows: Sequence[NewTask], exc: BrokerError, delay_s: float) -> TaskSendError:
    task_id = str(rows[0].id) if len(rows) == 1 else None
    payload = _payload(rows[0], delay_s) if len(rows) == 1 else None
    if exc.missing_table:
        return TaskSendError(
            code=TaskSendErrorCode.ENQUEUE_FAILED,
            message=f"task {name!r}: the task table does not exist: run `manage.py migrate` ({_safe_text(exc)})",
            retryable=False,
            task_id=task_id,
            payload=payload,
            exception=exc,
        )
    logger.warning("enqueue failed task=%s count=%d: %s", name, len(rows), _safe_text(exc))
    return TaskSendError(
        code=TaskSendErrorCode.ENQUEUE_FAILED,
        message=f"task {name!r}: database error: {_safe_text(exc)}",
        retryable=exc.transient,
        task_id=task_id,
        payload=payload,
        exception=exc,
    )


R = TypeVar("R")


def wait_for_result(
    key: str,
    poll: Callable[[], R | None],
    timeout_ms: float | None,
    *,
    timed_out: Callable[[], R],
    failed: Callable[[BrokerError], R],
) -> R:
    """Call `poll()` until it answers (not None), for at most `timeout_ms` (see `_deadline`).

    On PostgreSQL the wait listens for the NOTIFY that names `key` (a task or workflow id);
    elsewhere it polls, briefly at first. Even with notifications it looks again now and then: a
    NOTIFY is a hint, not a promise. A database error ends the wait with `failed(error)`."""
    deadline = _deadline(timeout_ms)
    try:
        broker = _broker()
        waiter = broker.result_waiter(key)
        wait = waiter.__enter__()
    except BrokerError as exc:
        return failed(exc)
    try:
        delay, longest = (0.002, 0.05) if broker.default_poll_interval_s < 1 else (1.0, 1.0)
        while True:
            result = poll()
            if result is not None:
                return result
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return timed_out()
            try:
                wait(delay if remaining is None else min(delay, remaining))
            except BrokerError as exc:
                return failed(exc)
            delay = min(delay * 1.5, longest)
    finally:
        waiter.__exit__(None, None, None)



async def wait_for_result_async(
    poll: Callable[[], R | None], timeout_ms: float | None, *, timed_out: Callable[[], R]
) -> R:
    """`wait_for_result()` for an event loop: polls (in Django's sync thread) without holding one."""
    deadline = _deadline(timeout_ms)
    delay = 0.002
    poll_async = sync_to_async(poll, thread_sensitive=True)
    while True:
        result = await poll_async()
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            return timed_out()
        await asyncio.sleep(delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 1.5, 0.05)

def _broker() -> Broker:
    from .broker import get_broker

    try:
        return get_broker()
    except SettingsError as exc:  # reported by `manage.py check` too; a lookup answers BROKER_ERROR
        raise BrokerError(f"HORSIES setting: {exc}", transient=False) from exc


def _in_event_loop() -> bool:
    # The low-level form: no exception to raise and catch on every send outside a loop.
    return asyncio._get_running_loop() is not None


def _send_on_commit_by_default() -> bool:
    try:
        return get_settings().send_on_commit
    except SettingsError:
        return False  # send() then reports the bad setting as VALIDATION_FAILED


def _send_error(code: TaskSendErrorCode, message: str, *, retryable: bool = False) -> Err[TaskSendError]:
    return Err(TaskSendError(code=code, message=message, retryable=retryable))


class TaskHandle(Generic[T]):
    """A sent task: `get()` waits for its `TaskResult`; `info()` reads its row."""

    __slots__ = ("task_id", "_task", "_app", "_final")

    def __init__(self, task_id: str, task: TaskFunction[Any, T] | None = None, *, app: Horsies | None = None) -> None:
        self.task_id = task_id
        self._task = task
        self._app = app  # a rebuilt handle finds its task's types on first read
        # The result of an ended task never changes, so once read it is kept: a later get() does
        # not query. Lookups that may change (no such task yet, a database error) are not kept.
        self._final: TaskResult[T, TaskError] | None = None

    def __repr__(self) -> str:
        return f"TaskHandle(task_id={self.task_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def _poll(self) -> TaskResult[T, TaskError] | None:
        """One look at the row: the final result, or None while the task has not ended."""
        if self._final is not None:
            return self._final
        task_uuid = _parse_task_id(self.task_id)
        if task_uuid is None:
            return _retrieval_error(RetrievalCode.TASK_NOT_FOUND, f"{self.task_id!r} is not a task id")
        try:
            outcome = _broker().fetch_outcome(task_uuid)
        except BrokerError as exc:
            return _broker_error(self.task_id, exc)
        if outcome is None:
            return _retrieval_error(RetrievalCode.TASK_NOT_FOUND, f"no task with id {self.task_id}")
        if outcome.status not in ENDED:
            return None
        if outcome.result is None:
            self._final = _retrieval_error(
                RetrievalCode.RESULT_NOT_AVAILABLE, f"task {self.task_id} ended {outcome.status} with no result"
            )
            return self._final
        task = self._task
        if task is None and self._app is not None:
            try:
                name = _broker_name_lookup(self.task_id)
            except (DatabaseError, SynchronousOnlyOperation) as exc:
                return _broker_error(self.task_id, exc)
            task = self._task = self._app.get_task(name) if name else None
        self._final = _decode_stored(outcome.result, task)
        return self._final

    def get(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """Wait up to `timeout_ms` (None: no limit) for the task to end and return its result.

        When the time runs out the result is `RetrievalCode.WAIT_TIMEOUT`; the task may still run.
        On PostgreSQL the wait listens for the worker's NOTIFY; elsewhere it polls, briefly at first.
        """
        if self._final is not None:
            return self._final
        return wait_for_result(
            self.task_id,
            self._poll,
            timeout_ms,
            timed_out=lambda: self._timed_out(timeout_ms),
            failed=lambda exc: _broker_error(self.task_id, exc),
        )

    async def get_async(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """`get()` for an event loop: waits without holding a thread."""
        if self._final is not None:
            return self._final
        return await wait_for_result_async(self._poll, timeout_ms, timed_out=lambda: self._timed_out(timeout_ms))

    def _timed_out(self, timeout_ms: int | None) -> TaskResult[T, TaskError]:
        return _retrieval_error(
            RetrievalCode.WAIT_TIMEOUT, f"task {self.task_id} did not finish within {timeout_ms} ms; it may still run"
        )

    def info(
        self, *, include_result: bool = False, include_failed_reason: bool = False, include_attempts: bool = False
    ) -> Result[TaskInfo | None, TaskError]:
        """The task's row as a `TaskInfo`; `Ok(None)` for an unknown id; `Err` (BROKER_ERROR) on a
        database error. `include_result` adds the decoded `TaskResult` of an ended task,
        `include_failed_reason` why it failed, `include_attempts` one entry per try."""
        task_uuid = _parse_task_id(self.task_id)
        if task_uuid is None:
            return Ok(None)
        try:
            return Ok(self._read_info(task_uuid, include_result, include_failed_reason, include_attempts))
        except (DatabaseError, SynchronousOnlyOperation, SettingsError) as exc:
            logger.warning("task info lookup failed task_id=%s: %s", self.task_id, exc)
            return Err(TaskError(error_code=OperationalErrorCode.BROKER_ERROR, message=f"database error: {exc}"))

    def _read_info(
        self, task_uuid: uuid.UUID, include_result: bool, include_failed_reason: bool, include_attempts: bool
    ) -> TaskInfo | None:
        from .models import Task, TaskStatus, WorkerProcess

        database = get_settings().database
        row = Task.objects.using(database).filter(pk=task_uuid).first()
        if row is None:
            return None
        status = TaskStatus(row.status)
        rows = list(row.attempts.using(database).order_by("number")) if include_attempts else []
        worker_ids = {row.worker_id, *(a.worker_id for a in rows)} - {None, ""}
        workers = {w.id: w for w in WorkerProcess.objects.using(database).filter(id__in=worker_ids)}
        ended = status in ENDED
        failed = ended and status != TaskStatus.COMPLETED
        result = None
        if include_result and ended and row.result is not None:
            task = self._task or (self._app or app).get_task(row.name)
            result = _decode_stored(row.result, task)
        worker = workers.get(row.worker_id or "")
        return TaskInfo(
            task_id=str(row.id),
            task_name=row.name,
            status=status,
            queue_name=row.queue_name,
            priority=row.priority,
            retry_count=row.retry_count,
            max_retries=row.max_retries,
            next_retry_at=row.run_at if status == TaskStatus.PENDING and row.retry_count else None,
            sent_at=row.enqueued_at,
            enqueued_at=row.run_at,
            claimed_at=row.claimed_at,
            started_at=row.started_at,
            completed_at=row.finished_at if status == TaskStatus.COMPLETED else None,
            failed_at=row.finished_at if status == TaskStatus.FAILED else None,
            worker_hostname=worker.hostname if worker else None,
            worker_pid=worker.pid if worker else None,
            worker_process_name=row.worker_id,
            result=result,
            failed_reason=(row.error_message or row.error_code) if include_failed_reason and failed else None,
            attempts=_attempt_infos(str(row.id), rows, workers, still_open=not ended) if include_attempts else None,
            attempt=row.attempt,
            finished_at=row.finished_at,
            good_until=row.good_until,
            worker_id=row.worker_id,
            error_code=row.error_code,
            error_message=row.error_message,
        )

    def cancel(self) -> bool:
        """Cancel the task if it has not ended; True if this call cancelled it. See `Horsies.cancel`."""
        return cancel_tasks([self.task_id]) == [self.task_id]

    async def cancel_async(self) -> bool:
        return await sync_to_async(self.cancel, thread_sensitive=True)()

    async def info_async(
        self, *, include_result: bool = False, include_failed_reason: bool = False, include_attempts: bool = False
    ) -> Result[TaskInfo | None, TaskError]:
        """`info()` for async code."""
        return await sync_to_async(self.info, thread_sensitive=True)(
            include_result=include_result,
            include_failed_reason=include_failed_reason,
            include_attempts=include_attempts,
        )


def _decode_stored(envelope: Any, task: TaskFunction[Any, Any] | None) -> TaskResult[Any, TaskError]:
    """A stored result envelope as a TaskResult, typed by `task` when it is registered here."""
    try:
        return decode_result(envelope, task.signature.ok_adapter if task else None)
    except CodecError as exc:
        return TaskResult(err=TaskError(error_code=OperationalErrorCode.RESULT_DESERIALIZATION_ERROR, message=str(exc)))


_ATTEMPT_OUTCOMES = {
    AttemptOutcome.COMPLETED: TaskAttemptOutcome.COMPLETED,
    AttemptOutcome.FAILED: TaskAttemptOutcome.FAILED,
    AttemptOutcome.WORKER_LOST: TaskAttemptOutcome.WORKER_FAILURE,
}


def _attempt_infos(
    task_id: str, rows: Sequence[Any], workers: Mapping[str, Any], *, still_open: bool
) -> tuple[TaskAttemptInfo, ...]:
    infos = []
    for index, attempt in enumerate(rows):
        outcome = _ATTEMPT_OUTCOMES.get(attempt.outcome, TaskAttemptOutcome.FAILED)
        later = index + 1 < len(rows)
        worker = workers.get(attempt.worker_id)
        infos.append(
            TaskAttemptInfo(
                task_id=task_id,
                attempt=attempt.number,
                outcome=outcome,
                will_retry=outcome != TaskAttemptOutcome.COMPLETED and (later or still_open),
                started_at=attempt.started_at,
                finished_at=attempt.finished_at,
                error_code=attempt.error_code,
                error_message=attempt.error_message,
                failed_reason=None if outcome == TaskAttemptOutcome.COMPLETED else attempt.error_message or None,
                worker_id=attempt.worker_id,
                worker_hostname=worker.hostname if worker else None,
                worker_pid=worker.pid if worker else None,
                worker_process_name=attempt.worker_id or None,
            )
        )
    return tuple(infos)


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
    except BrokerError as exc:  # Like get(): report, do not raise; nothing was cancelled.
        logger.warning("cancel failed task_ids=%s: %s", task_ids, exc)
        return []


# Longer waits than this are waits with no limit (and keep the arithmetic on floats finite).
MAX_WAIT_MS = 10 * 365 * 86_400 * 1000


def _deadline(timeout_ms: float | None) -> float | None:
    """The monotonic time a wait of `timeout_ms` ends: None for no limit. Raises `TypeError` for
    a value that is not a number; NaN and negative numbers mean "look once", like 0."""
    if timeout_ms is None:
        return None
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
        raise TypeError(f"timeout_ms must be a number of milliseconds or None, got {type(timeout_ms).__name__}")
    if not timeout_ms > 0:  # NaN too: it compares false with everything
        return time.monotonic()
    if timeout_ms >= MAX_WAIT_MS:
        return None
    return time.monotonic() + timeout_ms / 1000


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


def _payload(row: NewTask, delay_s: float) -> TaskSendPayload:
    """What `row` holds, as the payload of a failed send (`delay_s` 0 is a plain send)."""
    return TaskSendPayload(
        task_name=row.name,
        queue_name=row.queue_name,
        priority=row.priority,
        kwargs_json=row.arguments_json,
        sent_at=row.enqueued_at,
        good_until=row.good_until,
        enqueue_delay_seconds=float(delay_s) if delay_s else None,
        max_retries=row.max_retries,
        idempotency_key=row.idempotency_key,
    )


def _sound(payload: TaskSendPayload) -> bool:
    """Whether every field has a value a send could have written (a payload built by hand may not)."""
    from .models import MAX_PRIORITY, MIN_PRIORITY

    def aware(value: object) -> bool:
        return isinstance(value, datetime) and not timezone.is_naive(value)

    key = payload.idempotency_key
    return (
        isinstance(payload.priority, int)
        and not isinstance(payload.priority, bool)
        and MIN_PRIORITY <= payload.priority <= MAX_PRIORITY
        and all(isinstance(text, str) for text in (payload.task_name, payload.queue_name, payload.kwargs_json))
        and aware(payload.sent_at)
        and (payload.good_until is None or aware(payload.good_until))
        and isinstance(payload.max_retries, int)
        and 0 <= payload.max_retries <= 100
        and (key is None or (isinstance(key, str) and 0 < len(key) <= 255))
    )


def _existing_task(task_id: uuid.UUID) -> tuple[str, Any] | None:
    """The name and stored arguments of task `task_id`, or None if there is no such task."""
    from .models import Task

    found = Task.objects.using(get_settings().database).filter(pk=task_id).values_list("name", "arguments").first()
    return None if found is None else (found[0], loads(found[1]))


class _Unset:
    """The type of `_UNSET`: an option not given, as opposed to given as None."""

    __slots__ = ()


_UNSET = _Unset()


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
        default_unhandled_error_code: BuiltInTaskCode | str | None = None,
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
        self._prepared: _Prepared | None = None
        self.default_unhandled_error_code = default_unhandled_error_code
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
        good_until: datetime | str | None | _Unset = _UNSET,
        idempotency_key: str | None = None,
    ) -> TaskFunction[P, T]:
        """A copy of this task whose sends use these options (like Django's `Task.using()`).

        `good_until`: an aware `datetime` or an ISO 8601 string with an offset ("...Z");
        `good_until=None` clears a deadline given by `@app.task(good_until=...)`, as in horsies.
        `idempotency_key`: while a task of this name with the same key is pending or running, or
        ended less than HORSIES['IDEMPOTENCY_WINDOW_S'] ago (a day by default), a send returns its
        handle instead of queueing another.

        Raises `TypeError` at once for an option of the wrong type; a value of the right type that
        cannot be used (an empty queue name, a naive datetime) makes each send return `Err`.
        """
        _check_type("queue_name", queue_name, str)
        _check_type("priority", priority, int)
        if not isinstance(good_until, _Unset):
            _check_type("good_until", good_until, (datetime, str))
        _check_type("idempotency_key", idempotency_key, str)
        current = self.options
        options = SendOptions(
            queue_name=current.queue_name if queue_name is None else queue_name,
            priority=current.priority if priority is None else priority,
            good_until=current.good_until if isinstance(good_until, _Unset) else good_until,
            idempotency_key=current.idempotency_key if idempotency_key is None else idempotency_key,
        )
        bound = copy.copy(self)
        bound.options = options
        bound._prepared = None
        return bound

    def node(self, **options: Unpack[NodeOptions]) -> Callable[..., TaskNode[T]]:
        """A workflow node of this task: `task.node(waits_for=[a], args_from={"x": a})(y=1)`.
        `options` are `TaskNode`'s, with its defaults; the keyword arguments of the call are the
        node's static arguments, checked against the signature at start."""
        from .workflows.spec import NodeOptions, TaskNode

        # Refused here, as a signature would: passed on, a misspelt option would fail only at the node's call.
        unknown = sorted(options.keys() - NodeOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"node() got an unexpected keyword argument {unknown[0]!r}")

        def make(**kwargs: Any) -> TaskNode[T]:
            return TaskNode(self, kwargs=kwargs, **options)

        return make

    def code_for_exception(self, exc: BaseException) -> BuiltInTaskCode | str:
        """The error code for an exception the task raised: the nearest class in the task's
        `exception_mapper`, then in `HORSIES['EXCEPTION_MAPPER']`, then the task's
        `default_unhandled_error_code`, then `HORSIES['DEFAULT_UNHANDLED_ERROR_CODE']`, else
        UNHANDLED_EXCEPTION. (horsies matches mapper classes exactly; a subclass matching its
        nearest mapped base is deliberate here, so `requests.ConnectTimeout` finds `Timeout`.)"""
        settings = get_settings()
        for mapper in (self.exception_mapper, settings.exception_mapper):
            for cls in type(exc).__mro__:
                if cls in mapper:
                    code = mapper[cls]
                    return BUILTIN_CODES.get(code, code)
        default = self.default_unhandled_error_code or settings.default_unhandled_error_code
        if default:
            return BUILTIN_CODES.get(default, default)
        return OperationalErrorCode.UNHANDLED_EXCEPTION

    # -- sending ------------------------------------------------------------------------

    def _prepare(self) -> Result[_Prepared, TaskSendError]:
        """What every send of this task (with these options) shares, worked out once per settings:
        the queue, the priority, `good_until` and the idempotency key, each checked."""
        try:
            settings = get_settings()
        except SettingsError as exc:  # `manage.py check` reports it too, unless checks were skipped
            return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"HORSIES setting: {exc} ({exc.hint})")
        prepared = self._prepared
        if prepared is not None and prepared.settings is settings:
            return Ok(prepared)
        match _prepare_options(self.name, self.queue_name, self.options, settings):
            case Err() as error:
                return error
            case Ok(prepared):
                self._prepared = prepared
                return Ok(prepared)

    def _new_task(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], delay_s: float, prepared: _Prepared
    ) -> Result[NewTask, TaskSendError]:
        from .broker import NewTask

        try:
            arguments_json = self.signature.encode_arguments_json(args, kwargs)
        except CodecError as exc:
            return _send_error(TaskSendErrorCode.VALIDATION_FAILED, f"task {self.name!r}: {exc}")
        limit = prepared.settings.max_payload_bytes
        # A character takes at most 4 bytes in UTF-8: count them only when it could matter.
        if len(arguments_json) * 4 > limit and (size := len(arguments_json.encode())) > limit:
            return _send_error(
                TaskSendErrorCode.PAYLOAD_TOO_LARGE,
                f"task {self.name!r}: arguments are {size} bytes; HORSIES['MAX_PAYLOAD_BYTES'] is {limit}",
            )
        now = timezone.now()
        return Ok(
            NewTask(
                id=new_task_id(),
                name=self.name,
                queue_name=prepared.queue_name,
                priority=prepared.priority,
                arguments_json=arguments_json,
                run_at=now + timedelta(seconds=delay_s) if delay_s else now,
                enqueued_at=now,
                good_until=prepared.good_until,
                max_retries=self.retry_policy.max_retries if self.retry_policy else 0,
                idempotency_key=prepared.idempotency_key,
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
        if sends_suppressed():
            return self._suppressed()
        match self._prepare():
            case Err() as failed:
                return failed
            case Ok(prepared):
                pass
        rows: list[NewTask] = []
        for index, (args, kwargs) in enumerate(calls):
            match self._new_task(args, kwargs, delay_s, prepared):
                case Ok(row):
                    rows.append(row)
                case Err(error):
                    if len(calls) == 1:
                        return Err(error)
                    return Err(dataclasses.replace(error, message=f"call {index}: {error.message}"))
        if prepared.idempotency_key is not None and len(rows) > 1:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: an idempotency_key names one task; send_many() cannot share it",
            )
        try:
            broker = prepared.broker
            if broker is None:
                # Sends share one broker per settings: it holds no per-connection state for them.
                broker = _broker()
                self._prepared = prepared = dataclasses.replace(prepared, broker=broker)
            if prepared.idempotency_key is not None:
                window = timedelta(seconds=prepared.settings.idempotency_window_s)
                existing_id = broker.enqueue_idempotent(rows[0], ended_after=timezone.now() - window)
                signals.sent(self, rows if existing_id == str(rows[0].id) else [])
                return Ok([TaskHandle(existing_id, self)])
            broker.enqueue_many(rows)
        except BrokerError as exc:
            return Err(_enqueue_failed(self.name, rows, exc, delay_s))
        signals.sent(self, rows)
        return Ok([TaskHandle(str(row.id), self) for row in rows])

    def _suppressed(self) -> Err[TaskSendError]:
        return _send_error(
            TaskSendErrorCode.SEND_SUPPRESSED,
            f"task {self.name!r}: sends are suppressed while task modules are imported; send from a "
            "function, a view or another task instead of at module level",
        )

    # -- replaying a failed send --------------------------------------------------------

    def retry_send(self, error: TaskSendError) -> TaskSendResult[TaskHandle[T]]:
        """Send again what a `send()` that failed with ENQUEUE_FAILED would have written, under
        the same task id. If that send did commit after all, this returns its handle."""
        if _in_event_loop():
            return self._async_context("retry_send")
        return self._replay(error, scheduled=False)

    async def retry_send_async(self, error: TaskSendError) -> TaskSendResult[TaskHandle[T]]:
        """`retry_send()` for async code."""
        return await sync_to_async(self._replay, thread_sensitive=True)(error, scheduled=False)

    def retry_schedule(self, error: TaskSendError) -> TaskSendResult[TaskHandle[T]]:
        """`retry_send()` for a failed `schedule()`: the task keeps the run time first asked for."""
        if _in_event_loop():
            return self._async_context("retry_schedule")
        return self._replay(error, scheduled=True)

    async def retry_schedule_async(self, error: TaskSendError) -> TaskSendResult[TaskHandle[T]]:
        """`retry_schedule()` for async code."""
        return await sync_to_async(self._replay, thread_sensitive=True)(error, scheduled=True)

    def _replay(self, error: TaskSendError, *, scheduled: bool) -> TaskSendResult[TaskHandle[T]]:
        match self._replay_row(error, scheduled=scheduled):
            case Err() as refused:
                return refused
            case Ok(row):
                pass
        if sends_suppressed():
            return self._suppressed()
        payload = error.payload
        assert payload is not None
        try:
            existing = _existing_task(row.id)
            if existing is None:
                if row.idempotency_key is not None:
                    window = timedelta(seconds=get_settings().idempotency_window_s)
                    holder = _broker().enqueue_idempotent(row, ended_after=timezone.now() - window)
                    return Ok(TaskHandle(holder, self))
                _broker().enqueue_many([row])
                return Ok(TaskHandle(str(row.id), self))
        except (BrokerError, DatabaseError, SettingsError) as exc:
            logger.warning("send replay failed task=%s id=%s: %s", self.name, row.id, exc)
            try:  # the insert may have lost a race with another replay of the same send
                existing = _existing_task(row.id)
            except (DatabaseError, SettingsError):
                existing = None
            if existing is None:
                return Err(
                    dataclasses.replace(error, message=f"task {self.name!r}: database error: {exc}", exception=exc)
                )
        if existing != (row.name, loads(row.arguments_json)):
            return _send_error(
                TaskSendErrorCode.PAYLOAD_MISMATCH,
                f"task {self.name!r}: task {row.id} exists with other arguments than this payload",
            )
        return Ok(TaskHandle(str(row.id), self))

    def _replay_row(self, error: object, *, scheduled: bool) -> Result[NewTask, TaskSendError]:
        """The row a failed send would have written, or why `error` cannot be replayed."""
        from .broker import NewTask

        method = "retry_schedule" if scheduled else "retry_send"
        if not isinstance(error, TaskSendError):
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED, f"task {self.name!r}: {method}() takes a TaskSendError"
            )
        payload = error.payload
        if error.code != TaskSendErrorCode.ENQUEUE_FAILED or payload is None or error.task_id is None:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: {method}() replays a send that failed with ENQUEUE_FAILED; this error "
                f"is {error.code}{'' if payload else ' and carries no payload'}",
            )
        if payload.task_name != self.name:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: this error is from a send of task {payload.task_name!r}",
            )
        if (payload.enqueue_delay_seconds is not None) != scheduled:
            origin, other = ("schedule", "retry_schedule") if not scheduled else ("send", "retry_send")
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: this error is from a {origin}(); replay it with {other}()",
            )
        task_uuid = _parse_task_id(error.task_id)
        altered = _send_error(
            TaskSendErrorCode.PAYLOAD_MISMATCH,
            f"task {self.name!r}: the payload was altered after the send failed; send the task anew",
        )
        try:
            if task_uuid is None or payload.fingerprint() != payload.enqueue_sha or not _sound(payload):
                return altered
            run_at = payload.sent_at + timedelta(seconds=payload.enqueue_delay_seconds or 0)
        except (TypeError, ValueError, AttributeError, OverflowError):  # fields replaced by hand
            return altered
        return Ok(
            NewTask(
                id=task_uuid,
                name=payload.task_name,
                queue_name=payload.queue_name,
                priority=payload.priority,
                arguments_json=payload.kwargs_json,
                run_at=run_at,
                enqueued_at=payload.sent_at,
                good_until=payload.good_until,
                max_retries=payload.max_retries,
                idempotency_key=payload.idempotency_key,
            )
        )

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
        if not isinstance(calls, Iterable):
            raise TypeError(f"send_many() takes a list of calls, got {type(calls).__name__}")
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

        if sends_suppressed():
            return self._suppressed()
        if self.options.idempotency_key is not None:
            return _send_error(
                TaskSendErrorCode.VALIDATION_FAILED,
                f"task {self.name!r}: an idempotency_key is resolved as the row is written; use send()",
            )
        match self._prepare():
            case Err() as failed:
                return failed
            case Ok(prepared):
                pass
        match self._new_task(args, kwargs, 0, prepared):
            case Ok(row):
                transaction.on_commit(lambda: self._write_committed(row), using=get_settings().database)
                return Ok(TaskHandle(str(row.id), self))
            case Err() as error:
                return error

    def _write_committed(self, row: NewTask) -> None:
        try:
            _broker().enqueue_many([row])
        except BrokerError as exc:  # Raising here would hit the code that committed, not the sender.
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
                f"got {_shown(delay_seconds)}",
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
        default_unhandled_error_code: BuiltInTaskCode | str | None = None,
        good_until: datetime | None = None,
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
        default_unhandled_error_code: BuiltInTaskCode | str | None = None,
        good_until: datetime | None = None,
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
        default_unhandled_error_code: BuiltInTaskCode | str | None = None,
        good_until: datetime | None = None,
    ) -> Any:
        """Register a function as task `name` on `queue_name` (default: "default").

        `retry_policy` retries listed error codes; `timeout_ms` stops a run that takes longer
        (TASK_TIMEOUT); `exception_mapper` turns raised exception classes into error codes, and
        `default_unhandled_error_code` is the code of an exception no mapper names. `good_until`
        (timezone-aware) is the deadline of every send unless `with_options()` says otherwise.
        """

        def register(func: Callable[P, TaskResult[T, TaskError]]) -> TaskFunction[P, T]:
            if not isinstance(name, str) or not name:
                raise TaskDefinitionError(f"task name must be a non-empty string, got {name!r}")
            if isinstance(func, TaskFunction):
                raise TaskDefinitionError(f"task {name!r}: {func!r} is already a task")
            if getattr(func, "__wrapped__", None) is not None:
                # horsies' E104: another decorator's wrapper hides the signature that arguments are
                # encoded by, so @app.task must be applied to the function itself.
                raise TaskDefinitionError(
                    f"task {name!r} ({_where(func)}) is already wrapped by another decorator (it has "
                    "__wrapped__); apply @app.task directly to the function, as the outermost decorator"
                )
            existing = self._tasks.get(name)
            if existing is not None and not _same_function(existing.fn, func):
                raise TaskDefinitionError(
                    f"task name {name!r} is already used by {_where(existing.fn)}; {_where(func)} must use another name"
                )
            _check_task_options(name, func, retry_policy, timeout_ms, exception_mapper)
            default_code = _default_code(name, func, default_unhandled_error_code)
            _check_good_until(name, func, good_until)
            limit = _rate_limit(name, func, rate_limit)
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
                options=SendOptions(good_until=good_until),
                default_unhandled_error_code=default_code,
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
        """Cancel a task by id if it has not ended; True if this call cancelled it. Raises
        `TypeError` at once if `task_id` is not a `str` or `UUID`; an id that names no task is False."""
        _check_task_id(task_id)
        return cancel_tasks([str(task_id)]) == [str(task_id)]

    def workflow(
        self,
        name: str,
        tasks: Sequence[TaskNode[Any]],
        on_error: OnError | str = "fail",
        output: TaskNode[T] | None = None,
        success_policy: SuccessPolicy | None = None,
        definition_key: str | None = None,
    ) -> WorkflowSpec[T]:
        """A workflow of `tasks` (TaskNodes) to `start()`; see docs/workflows.md. Nothing is checked
        until `start()`, which answers a bad workflow with `Err(VALIDATION_FAILED)`."""
        from .workflows.spec import WorkflowSpec

        return WorkflowSpec(
            self, name, tasks, on_error=on_error, output=output, success_policy=success_policy,
            definition_key=definition_key,
        )  # fmt: skip

    def get_workflow_handle(self, workflow_id: str | uuid.UUID) -> WorkflowHandle[Any]:
        """A handle for a workflow started elsewhere; no database access until it is used."""
        from .workflows.handle import WorkflowHandle

        return WorkflowHandle(str(workflow_id), app=self)

    def get_handle(self, task_id: str | uuid.UUID) -> TaskHandle[Any]:
        """A handle for a task sent elsewhere (another request, another process). Raises
        `TypeError` at once if `task_id` is not a `str` or `UUID`; a string that is not a task id
        gives a handle whose `get()` is `TASK_NOT_FOUND`."""
        _check_task_id(task_id)
        # No database access here, so this works inside an event loop too; the handle looks its
        # task up when it first reads the result.
        return TaskHandle(str(task_id), None, app=self)


def _check_task_id(task_id: object) -> None:
    if not isinstance(task_id, (str, uuid.UUID)):
        raise TypeError(f"task_id must be a str or uuid.UUID, got {type(task_id).__name__}")


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
    if exception_mapper is not None and not isinstance(exception_mapper, Mapping):
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): exception_mapper must be a dict")
    for cls, code in (exception_mapper or {}).items():
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TaskDefinitionError(
                f"task {name!r} ({_where(fn)}): exception_mapper maps exception classes to error codes, "
                f"got {cls!r}: {code!r}"
            )
        problem = code_spelling_problem(code, f"exception_mapper[{cls.__name__}]")
        if problem:
            raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): {problem}")


def _default_code(name: str, fn: Callable[..., Any], code: object) -> BuiltInTaskCode | str | None:
    if code is None:
        return None
    problem = code_spelling_problem(code, "default_unhandled_error_code")
    if problem:
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): {problem}")
    assert isinstance(code, str)
    return BUILTIN_CODES.get(code, code)


def _check_good_until(name: str, fn: Callable[..., Any], good_until: object) -> None:
    if good_until is not None and (not isinstance(good_until, datetime) or timezone.is_naive(good_until)):
        raise TaskDefinitionError(
            f"task {name!r} ({_where(fn)}): good_until must be a timezone-aware datetime, got {good_until!r}"
        )


def _rate_limit(name: str, fn: Callable[..., Any], spec: str | None) -> RateLimit | None:
    if spec is None:
        return None
    try:
        return RateLimit.parse(spec)
    except ValueError as exc:
        raise TaskDefinitionError(f"task {name!r} ({_where(fn)}): {exc}") from None


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


__all__ = [
    "Horsies",
    "SendOptions",
    "TaskAttemptInfo",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "app",
    "sends_suppressed",
    "suppress_sends",
]
