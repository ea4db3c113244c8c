"""horsies' documented task-level snippets (retry policy, exception mapper, error handling, task
info, send errors and replay), run as written there with only the imports changed, against a real
worker and database. Where a snippet's task body is `...` or calls an outside service, the body
here stands in for it; decorators, policies and the code around sends and results are verbatim.
Intended differences from horsies are listed in docs/coming-from-horsies.md."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn
from unittest import mock

import pytest
from django.db import connection

from horsies_django import (
    TASK_TERMINAL_STATES,
    Err,
    Ok,
    OperationalErrorCode,
    RetrievalCode,
    RetryPolicy,
    TaskAttemptOutcome,
    TaskError,
    TaskResult,
    TaskSendErrorCode,
    TaskStatus,
    app,
    is_err,
    is_ok,
)
from horsies_django import RetrievalCode as LibraryErrorCode  # horsies' older name for the code families
from horsies_django.app import suppress_sends
from horsies_django.broker import BrokerError, get_broker
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.taskapp.models import Run

from ..conftest import run_worker

pytestmark = pytest.mark.django_db(transaction=True)


def run_all() -> None:
    Worker(burst=True).run()


@contextmanager
def table_gone() -> Iterator[None]:
    """The task table is unreachable: every statement on it fails."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE horsies_task RENAME TO horsies_task_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE horsies_task_away RENAME TO horsies_task")


@contextmanager
def outage() -> Iterator[None]:
    """Every insert fails as in an outage, with a transient BrokerError (a missing table would
    say "run migrate", which is not retryable; an outage is)."""
    broker_class = type(get_broker())

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise BrokerError("connection refused (an outage, for the test)", transient=True)

    with mock.patch.object(broker_class, "enqueue_many", refuse), mock.patch.object(
        broker_class, "enqueue_idempotent", refuse
    ):
        yield


# -- tasks, as the horsies pages define them ------------------------------------------------------


class RateLimited(Exception):
    pass


@app.task(
    "call_api",
    retry_policy=RetryPolicy.fixed([30, 60, 120], auto_retry_for=["RATE_LIMITED", "SERVICE_UNAVAILABLE"]),
)
def call_api(url: str) -> TaskResult[dict, TaskError]:  # type: ignore[type-arg]
    return TaskResult(err=TaskError(error_code="RATE_LIMITED", message=f"429 from {url}"))


def call_external_api() -> dict:  # type: ignore[type-arg]
    raise TimeoutError("the API did not answer")


@app.task(
    "some_api_call",
    retry_policy=RetryPolicy.exponential(
        base_seconds=30,
        max_retries=5,
        auto_retry_for=["TIMEOUT", "CONNECTION_ERROR"],
    ),
    exception_mapper={
        TimeoutError: "TIMEOUT",
        ConnectionError: "CONNECTION_ERROR",
    },
)
def some_api_call() -> TaskResult[dict, TaskError]:  # type: ignore[type-arg]
    result = call_external_api()
    return TaskResult(ok=result)


@app.task("order_limit")  # the errors page calls it "validate_order", a name the shop demo uses
def validate_order(order_id: str) -> TaskResult[dict, TaskError]:  # type: ignore[type-arg]
    total = 20_000 if order_id == "big" else 10
    if total > 10000:
        return TaskResult(
            err=TaskError(
                error_code="ORDER_LIMIT_EXCEEDED",
                message=f"Order {order_id} exceeds limit",
                data={"order_id": order_id, "total": total},
            )
        )

    return TaskResult(ok={"status": "valid"})


@app.task("my_task")
def my_task(a: int, b: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=a + b)


@app.task("quick_retries", retry_policy=RetryPolicy.fixed([0.05, 0.05], auto_retry_for=["DEADLOCK"], jitter=False))
def quick_retries(key: str) -> TaskResult[int, TaskError]:
    """Deadlocks twice, then succeeds: three attempts, two retries."""
    Run.objects.create(key=key, worker_pid=0)
    runs = Run.objects.filter(key=key).count()
    if runs <= 2:
        return TaskResult(err=TaskError(error_code="DEADLOCK", message="Deadlock detected"))
    return TaskResult(ok=runs)


@app.task("returns_none")
def returns_none() -> TaskResult[int, TaskError]:
    return None  # type: ignore[return-value]


@app.task("rich_error")
def rich_error(kind: str) -> TaskResult[int, TaskError]:
    try:
        {}["order"]  # noqa: B018 (raises on purpose)
    except KeyError as exc:
        if kind == "exception":
            return TaskResult(
                err=TaskError(error_code="NO_ORDER", exception=exc, data={"at": datetime(2026, 1, 1, tzinfo=UTC)})
            )
    if kind == "unencodable":
        return TaskResult(err=TaskError(error_code="NO_ORDER", data=object()))
    if kind == "nan":
        return TaskResult(err=TaskError(error_code="NO_ORDER", data=float("nan")))
    if kind == "surrogate-data":
        return TaskResult(err=TaskError(error_code="NO_ORDER", data={"\ud800": 1}))
    if kind == "raise-surrogate":
        raise ValueError("lone \ud800")
    if kind == "raise-nul":
        raise ValueError("nul \x00")
    if kind == "surrogate-message":
        return TaskResult(err=TaskError(error_code="NO_ORDER", message="lone \ud800"))
    return TaskResult(err=TaskError(error_code="NO_ORDER", message="nul \x00", data={"k": "\x00"}))


# -- Task lifecycle: the status enum ---------------------------------------------------------------


def test_task_status_snippet() -> None:
    status = TaskStatus.FAILED
    assert status.is_terminal  # True

    assert TaskStatus.RUNNING.is_terminal is False  # False

    # Frozenset for use in queries or filters
    assert TASK_TERMINAL_STATES == frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
    )


# -- Retry policy and task info --------------------------------------------------------------------


def test_user_codes_are_retried_and_task_info_shows_the_retry(capsys: pytest.CaptureFixture[str]) -> None:
    handle = call_api.send("https://api.example.com").unwrap()
    before = datetime.now(UTC)
    run_all()

    # The broker-methods page's task-info snippet, on the handle.
    result = handle.info(include_result=True, include_failed_reason=True)
    if is_err(result):
        print(f"Query failed: {result.err_value.message}")
    elif result.ok_value is not None:
        info = result.ok_value
        print(f"{info.task_name} {info.retry_count}/{info.max_retries}")
        if info.next_retry_at:
            print(f"Next retry at: {info.next_retry_at}")

    out = capsys.readouterr().out
    assert "call_api 1/3" in out and "Next retry at:" in out
    info = handle.info().unwrap()
    assert info is not None
    assert info.status is TaskStatus.PENDING and not info.status.is_terminal
    assert info.next_retry_at is not None
    # Fixed backoff's first interval, 30 s, moved by at most 25% either way.
    assert before + timedelta(seconds=22.4) <= info.next_retry_at <= datetime.now(UTC) + timedelta(seconds=37.6)
    assert info.enqueued_at == info.next_retry_at and info.sent_at < info.enqueued_at
    assert info.error_code == "RATE_LIMITED"
    assert info.result is None and info.failed_reason is None and info.attempts is None


def test_exception_mapper_snippet_maps_and_retries() -> None:
    handle = some_api_call.send().unwrap()
    run_all()
    info = handle.info(include_attempts=True).unwrap()
    assert info is not None
    assert (info.status, info.retry_count, info.max_retries, info.error_code) == ("PENDING", 1, 5, "TIMEOUT")
    assert info.attempts is not None
    [attempt] = info.attempts
    assert (attempt.attempt, attempt.outcome, attempt.will_retry, attempt.error_code) == (
        1,
        TaskAttemptOutcome.FAILED,
        True,
        "TIMEOUT",
    )


def test_retry_count_counts_put_backs_and_attempts_say_what_followed(thread_worker: Any) -> None:
    handle = quick_retries.send("deadlock").unwrap()
    with thread_worker(concurrency=1, poll_interval_s=0.01):
        assert handle.get(timeout_ms=20_000).unwrap() == 3
    info = handle.info(include_result=True, include_failed_reason=True, include_attempts=True).unwrap()
    assert info is not None
    assert (info.status, info.retry_count, info.max_retries, info.attempt) == ("COMPLETED", 2, 2, 3)
    assert info.result == TaskResult(ok=3)
    assert info.failed_reason is None and info.next_retry_at is None
    assert info.completed_at == info.finished_at and info.failed_at is None
    assert info.worker_hostname and info.worker_pid and info.worker_process_name == info.worker_id
    assert info.attempts is not None
    assert [(a.attempt, a.outcome, a.will_retry) for a in info.attempts] == [
        (1, "FAILED", True),
        (2, "FAILED", True),
        (3, "COMPLETED", False),
    ]
    assert info.attempts[0].failed_reason == "Deadlock detected"
    assert info.attempts[0].worker_hostname == info.worker_hostname


def test_a_failed_task_reports_its_failed_reason_and_time() -> None:
    handle = validate_order.send("big").unwrap()
    run_all()
    info = handle.info(include_result=True, include_failed_reason=True).unwrap()
    assert info is not None
    assert (info.status, info.retry_count, info.failed_reason) == ("FAILED", 0, "Order big exceeds limit")
    assert info.failed_at == info.finished_at and info.completed_at is None
    assert info.result is not None
    assert info.result.unwrap_err().data == {"order_id": "big", "total": 20_000}


def test_policy_validation_snippets_raise_value_error() -> None:
    # This raises ValueError:
    with pytest.raises(ValueError):
        RetryPolicy(
            max_retries=3,
            intervals=[60, 300],  # Only 2 intervals for 3 retries
            backoff_strategy="fixed",
        )

    # This also raises ValueError:
    with pytest.raises(ValueError):
        RetryPolicy(
            max_retries=3,
            intervals=[60, 300, 900],  # Multiple intervals
            backoff_strategy="exponential",  # Exponential needs exactly 1 interval
        )

    # Codes must use UPPER_SNAKE_CASE (exception class names like "TimeoutError" are rejected)
    with pytest.raises(ValueError):
        RetryPolicy.fixed([30, 60, 120], auto_retry_for=["TimeoutError"])


# -- Error handling ------------------------------------------------------------------------------


def test_a_task_returning_none_is_task_exception() -> None:
    handle = returns_none.send().unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code is OperationalErrorCode.TASK_EXCEPTION
    assert "returned NoneType, not a TaskResult" in (error.message or "")


def test_explicit_returns_snippet_matches_on_retrieval_codes() -> None:
    def process_task(timeout_ms: int) -> str | int | None:
        handle = my_task.send(10, 20).unwrap()
        result = handle.get(timeout_ms=timeout_ms)

        if result.is_err():
            error = result.err
            assert error is not None
            match error.error_code:
                case LibraryErrorCode.WAIT_TIMEOUT:
                    # Task may still be running
                    return "timeout"
                case LibraryErrorCode.TASK_NOT_FOUND:
                    return None
                case _:
                    return None

        return result.ok

    assert process_task(timeout_ms=50) == "timeout"  # no worker has run it yet
    assert app.get_handle("00000000-0000-0000-0000-000000000000").get(timeout_ms=50).err == TaskError(
        error_code=LibraryErrorCode.TASK_NOT_FOUND, message="no task with id 00000000-0000-0000-0000-000000000000"
    )


def test_user_defined_codes_and_data_come_back() -> None:
    handle = validate_order.send("big").unwrap()
    run_all()
    result = handle.get(timeout_ms=1000)
    assert result.is_err()
    assert result.err == TaskError(
        error_code="ORDER_LIMIT_EXCEEDED",
        message="Order big exceeds limit",
        data={"order_id": "big", "total": 20_000},
    )


def test_task_error_with_an_exception_object_and_non_json_data_is_stored() -> None:
    handle = rich_error.send("exception").unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code == "NO_ORDER"
    assert error.data == {"at": "2026-01-01T00:00:00Z"}
    assert error.exception is not None and error.exception["type"] == "KeyError"
    assert error.exception["message"] == "'order'" and '{}["order"]' in error.exception["traceback"]
    assert Task.objects.get(pk=handle.task_id).error_traceback == error.exception["traceback"]


@pytest.mark.parametrize("kind", ["unencodable", "nan"])
def test_task_error_the_codec_cannot_store_is_a_clear_serialization_error(kind: str) -> None:
    # Data JSON cannot hold is refused while the worker still holds the task, on both databases.
    handle = rich_error.send(kind).unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code is OperationalErrorCode.WORKER_SERIALIZATION_ERROR
    assert "the result of task 'rich_error' cannot be stored" in (error.message or "")
    assert Task.objects.get(pk=handle.task_id).status == "FAILED"


@pytest.mark.parametrize("kind", ["surrogate-data", "surrogate-message", "nul"])
def test_task_error_text_no_database_stores_is_replaced_and_the_code_kept(kind: str) -> None:
    # An error's text is a diagnosis: U+FFFD stands in for a NUL or a lone surrogate, which no
    # database (PostgreSQL: NUL) stores, and the task keeps its own code.
    handle = rich_error.send(kind).unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code == "NO_ORDER"
    assert "\ufffd" in (error.message or "") + repr(error.data)
    assert Task.objects.get(pk=handle.task_id).status == "FAILED"


@pytest.mark.parametrize(("kind", "stored"), [("raise-surrogate", "lone \ufffd"), ("raise-nul", "nul \ufffd")])
def test_an_exception_message_that_cannot_be_stored_as_is_is_replaced(kind: str, stored: str) -> None:
    handle = rich_error.send(kind).unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code is OperationalErrorCode.UNHANDLED_EXCEPTION
    assert error.message == f"ValueError: {stored}"
    assert error.exception is not None and error.exception["message"] == stored
    assert Task.objects.get(pk=handle.task_id).error_message == f"ValueError: {stored}"


# -- Retrieving results ----------------------------------------------------------------------------


def test_result_caching_snippet_reads_the_row_once() -> None:
    handle = my_task.send(1, 2).unwrap()
    run_all()

    # First call fetches from database
    result1 = handle.get()

    # Subsequent calls return cached result
    with table_gone():
        result2 = handle.get()  # No database query
        result3 = handle.get(timeout_ms=10)
    assert result1 == result2 == result3 == TaskResult(ok=3)


def test_lookups_that_may_change_are_not_cached() -> None:
    handle = my_task.send(1, 2).unwrap()
    assert handle.get(timeout_ms=20).unwrap_err().error_code == RetrievalCode.WAIT_TIMEOUT
    with table_gone():
        assert handle.get(timeout_ms=20).unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR
    run_all()
    assert handle.get(timeout_ms=1000) == TaskResult(ok=3)


# -- Sending: deadlines, send errors and replay ----------------------------------------------------


def test_with_options_deadline_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    deadline = datetime.now(timezone.utc) + timedelta(minutes=5)  # noqa: UP017 (as the snippet spells it)

    match my_task.with_options(good_until=deadline).send(1, 2):
        case Ok(handle):
            print(f"Task submitted with 5-minute deadline: {handle.task_id}")
        case Err(err):
            print(f"Send failed: {err.code}")

    assert "Task submitted with 5-minute deadline" in capsys.readouterr().out
    [row] = Task.objects.filter(name="my_task")
    assert row.good_until == deadline


def test_a_decorator_deadline_is_cleared_by_with_options_none() -> None:
    deadline = datetime.now(UTC) + timedelta(hours=1)
    timed = app.task("compat.timed", good_until=deadline)(my_task.fn)
    try:
        assert Task.objects.get(pk=timed.send(1, 1).unwrap().task_id).good_until == deadline
        assert Task.objects.get(pk=timed.with_options(good_until=None).send(1, 1).unwrap().task_id).good_until is None
    finally:
        app._tasks.pop("compat.timed")


def _failed_send(capsys: pytest.CaptureFixture[str]) -> Any:
    """The sending page's replay snippet while the database is out: send and replay both fail."""
    with outage():
        match my_task.send(1, 2):
            case Ok(handle):
                result = handle.get()
            case Err(err) if err.retryable:
                match my_task.retry_send(err):
                    case Ok(handle):
                        result = handle.get()  # noqa: F841 (as in the snippet)
                    case Err(retry_err):
                        print(f"Retry failed: {retry_err.code}")
            case Err(err):
                print(f"Permanent failure: {err.code}")
    assert "Retry failed: ENQUEUE_FAILED" in capsys.readouterr().out
    return err


def test_replay_snippet_sends_the_same_payload_under_the_same_id(
    capsys: pytest.CaptureFixture[str], thread_worker: Any
) -> None:
    err = _failed_send(capsys)
    assert err.code == TaskSendErrorCode.ENQUEUE_FAILED and err.retryable
    assert err.payload is not None and err.exception is not None and err.task_id
    assert (err.payload.task_name, err.payload.kwargs_json, err.payload.args_json) == ("my_task", '{"a":1,"b":2}', "[]")
    assert not Task.objects.exists()

    with thread_worker():
        match my_task.retry_send(err):
            case Ok(handle):
                result = handle.get(timeout_ms=10_000)
            case Err(retry_err):
                pytest.fail(f"Retry failed: {retry_err.code}")
    assert handle.task_id == err.task_id
    assert result == TaskResult(ok=3)
    # Replaying a send that did commit gives back that task; nothing is written twice.
    again = my_task.retry_send(err)
    assert is_ok(again) and again.ok_value.task_id == err.task_id
    assert Task.objects.count() == 1


def test_retry_schedule_keeps_the_run_time_first_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    with table_gone():
        err = my_task.schedule(3600, 1, 2).unwrap_err()
    assert my_task.retry_send(err).unwrap_err().code == TaskSendErrorCode.VALIDATION_FAILED
    handle = my_task.retry_schedule(err).unwrap()
    row = Task.objects.get(pk=handle.task_id)
    assert err.payload is not None
    assert row.run_at == err.payload.sent_at + timedelta(seconds=3600) == row.enqueued_at + timedelta(seconds=3600)
    plain = _failed_send(capsys)
    assert my_task.retry_schedule(plain).unwrap_err().code == TaskSendErrorCode.VALIDATION_FAILED


def test_replay_async(capsys: pytest.CaptureFixture[str]) -> None:
    from asgiref.sync import async_to_sync

    err = _failed_send(capsys)
    handle = async_to_sync(my_task.retry_send_async)(err).unwrap()
    assert handle.task_id == err.task_id and Task.objects.filter(pk=err.task_id).exists()


def test_an_altered_payload_is_payload_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    err = _failed_send(capsys)
    assert err.payload is not None
    altered = dataclasses.replace(err, payload=dataclasses.replace(err.payload, kwargs_json='{"a":1000,"b":2}'))
    mismatch = my_task.retry_send(altered).unwrap_err()
    assert mismatch.code == TaskSendErrorCode.PAYLOAD_MISMATCH
    assert not Task.objects.exists()
    # A task already stored under the id with other arguments is a mismatch too.
    my_task.retry_send(err).unwrap()
    forged = dataclasses.replace(
        err,
        payload=dataclasses.replace(err.payload, kwargs_json='{"a":1000,"b":2}', enqueue_sha=""),
    )
    assert my_task.retry_send(forged).unwrap_err().code == TaskSendErrorCode.PAYLOAD_MISMATCH
    assert Task.objects.count() == 1


def test_retry_methods_only_accept_enqueue_failed(capsys: pytest.CaptureFixture[str]) -> None:
    with suppress_sends():
        suppressed = my_task.send(1, 2).unwrap_err()
    invalid = my_task.send("one", 2).unwrap_err()
    err = _failed_send(capsys)
    assert err.payload is not None
    mismatch = my_task.retry_send(
        dataclasses.replace(err, payload=dataclasses.replace(err.payload, priority=1))
    ).unwrap_err()
    assert [e.code for e in (suppressed, invalid, mismatch)] == [
        "SEND_SUPPRESSED",
        "VALIDATION_FAILED",
        "PAYLOAD_MISMATCH",
    ]
    for error in (suppressed, invalid, mismatch, "not an error", None):
        refused = my_task.retry_send(error)  # type: ignore[arg-type]
        assert is_err(refused) and refused.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    from tests.taskapp.tasks import add

    other_task = add.retry_send(err)  # an error from another task's send
    assert is_err(other_task) and other_task.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert "task 'my_task'" in other_task.err_value.message
    assert not Task.objects.exists()


# -- Sends at module level -----------------------------------------------------------------------


def test_module_level_send_during_autodiscovery_is_suppressed() -> None:
    from tests.taskapp import tasks

    # "Wrong - returns Err(TaskSendError(SEND_SUPPRESSED)) during worker import"
    assert is_err(tasks.SENT_AT_IMPORT)
    assert tasks.SENT_AT_IMPORT.err_value.code == TaskSendErrorCode.SEND_SUPPRESSED
    assert tasks.SENT_AT_IMPORT.err_value.task_id is None and tasks.SENT_AT_IMPORT.err_value.payload is None


def test_a_module_imported_after_start_up_sends_and_one_imported_suppressed_does_not() -> None:
    sys.modules.pop("tests.taskapp.late_import", None)
    with suppress_sends():
        module = importlib.import_module("tests.taskapp.late_import")
    assert module.SENT.unwrap_err().code == TaskSendErrorCode.SEND_SUPPRESSED
    assert not Task.objects.exists()
    sys.modules.pop("tests.taskapp.late_import", None)
    module = importlib.import_module("tests.taskapp.late_import")
    assert Task.objects.filter(pk=module.SENT.unwrap().task_id, name="tests.add").exists()
    sys.modules.pop("tests.taskapp.late_import", None)


def test_no_worker_process_or_child_sends_at_import() -> None:
    from tests.taskapp.tasks import record

    record.send("child-ran")
    completed = run_worker("--burst", "--concurrency", "2")
    assert completed.returncode == 0, completed.stderr
    assert Run.objects.filter(key="child-ran").exists()  # a child started Django and ran a task
    assert not Task.objects.filter(name="tests.import_time").exists()


def test_async_twins_of_info_and_get_keep_the_same_rules() -> None:
    from asgiref.sync import async_to_sync

    handle = validate_order.send("big").unwrap()
    run_all()

    async def in_a_view() -> tuple[Any, Any]:
        info = await handle.info_async(include_failed_reason=True, include_attempts=True)
        return info, await handle.get_async(timeout_ms=1000)

    info, result = async_to_sync(in_a_view)()
    assert info.unwrap().failed_reason == "Order big exceeds limit"
    assert [a.outcome for a in info.unwrap().attempts] == [TaskAttemptOutcome.FAILED]
    assert result.unwrap_err().error_code == "ORDER_LIMIT_EXCEEDED"
    with table_gone():
        assert async_to_sync(handle.get_async)(timeout_ms=10) == result  # kept on the handle
        assert async_to_sync(handle.info_async)().unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


HOSTILE_PAYLOAD_FIELDS = [
    ("sent_at-text", {"sent_at": "2026-01-01"}),
    ("sent_at-none", {"sent_at": None}),
    ("priority-none", {"priority": None}),
    ("priority-huge", {"priority": 10**30}),
    ("kwargs-not-text", {"kwargs_json": 5}),
    ("kwargs-surrogate", {"kwargs_json": '{"a":"\ud800","b":2}'}),
    ("kwargs-nul", {"kwargs_json": '{"a":"\x00","b":2}'}),
    ("delay-nan", {"enqueue_delay_seconds": float("nan")}),
    ("delay-inf", {"enqueue_delay_seconds": float("inf")}),
    ("good_until-text", {"good_until": "soon"}),
    ("name-bad-str", {"task_name": _BadStr()}),
]


@pytest.mark.parametrize("fields", [f[1] for f in HOSTILE_PAYLOAD_FIELDS], ids=[f[0] for f in HOSTILE_PAYLOAD_FIELDS])
def test_a_payload_changed_by_hand_is_refused(fields: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    err = _failed_send(capsys)
    assert err.payload is not None
    altered = dataclasses.replace(err, payload=dataclasses.replace(err.payload, **fields))
    # A delay or another task's name is refused before the fingerprint is compared.
    assert my_task.retry_send(altered).unwrap_err().code in ("PAYLOAD_MISMATCH", "VALIDATION_FAILED")
    assert not Task.objects.exists()


RESEALED = ["priority-none", "priority-huge", "kwargs-surrogate", "kwargs-nul"]


@pytest.mark.parametrize("name", RESEALED)
def test_a_forged_payload_with_a_fresh_fingerprint_is_refused_without_raising(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _failed_send(capsys)
    assert err.payload is not None
    fields = dict(HOSTILE_PAYLOAD_FIELDS)[name]
    forged = dataclasses.replace(err, payload=dataclasses.replace(err.payload, **fields, enqueue_sha=""))
    result = my_task.retry_send(forged)
    assert is_err(result) and result.err_value.code in ("ENQUEUE_FAILED", "PAYLOAD_MISMATCH", "VALIDATION_FAILED")
    assert not Task.objects.exists()


def test_a_broken_setting_makes_info_and_replay_errors_not_exceptions(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _failed_send(capsys)
    handle = my_task.send(1, 2).unwrap()
    settings.HORSIES = {"WORKER": {"lease_s": 1, "heartbeat_s": 1}}
    assert handle.info().unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR
    assert my_task.retry_send(err).unwrap_err().code == TaskSendErrorCode.ENQUEUE_FAILED
