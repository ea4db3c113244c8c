"""Every error code a task or a lookup can end with, produced for real by a worker and a database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from horsies_django import (
    ContractCode,
    OperationalErrorCode,
    RetrievalCode,
    TaskError,
    TaskInfo,
    TaskResult,
    app,
)
from horsies_django.models import Task, TaskAttempt
from horsies_django.worker import Worker
from tests.taskapp.tasks import (
    Invoice,
    add,
    boom,
    echo_invoice,
    known_nowhere,
    not_a_result,
    unencodable,
    user_error,
    whoami,
    wrong_ok_type,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run_all() -> None:
    Worker(burst=True).run()


def test_typed_round_trip_of_dataclass_date_uuid_decimal() -> None:
    invoice = Invoice(
        number=uuid.uuid4(),
        issued=date(2026, 11, 1),
        due=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        total=Decimal("19.99"),
        lines=["a", "b"],
    )
    handle = echo_invoice.send(invoice, extra_days=3).unwrap()
    run_all()
    echoed = handle.get(timeout_ms=1000).unwrap()
    assert isinstance(echoed, Invoice)
    assert echoed == Invoice(invoice.number, invoice.issued, invoice.due, Decimal("39.98"), ["a", "b"])


def test_raised_exception_is_unhandled_exception_with_traceback_kept() -> None:
    handle = boom.send("kaboom").unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code == OperationalErrorCode.UNHANDLED_EXCEPTION
    assert error.message == "ValueError: kaboom"
    assert error.exception is not None and error.exception["type"] == "ValueError"
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.error_code) == ("FAILED", "UNHANDLED_EXCEPTION")
    assert "raise ValueError(message)" in row.error_traceback
    attempt = TaskAttempt.objects.get(task_id=handle.task_id)
    assert (attempt.number, attempt.outcome, attempt.error_code) == (1, "FAILED", "UNHANDLED_EXCEPTION")
    assert "ValueError: kaboom" in attempt.error_traceback


@pytest.mark.parametrize(
    ("task", "code", "fragment"),
    [
        (not_a_result, OperationalErrorCode.TASK_EXCEPTION, "returned int, not a TaskResult"),
        (wrong_ok_type, ContractCode.RETURN_TYPE_MISMATCH, "does not fit its declared type"),
        (unencodable, OperationalErrorCode.WORKER_SERIALIZATION_ERROR, "cannot be stored"),
        (known_nowhere, OperationalErrorCode.WORKER_RESOLUTION_ERROR, "no task named 'tests.known_nowhere'"),
    ],
)
def test_contract_and_worker_errors(task: Any, code: Any, fragment: str) -> None:
    handle = task.send().unwrap()
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code == code
    assert fragment in (error.message or "")
    assert Task.objects.get(pk=handle.task_id).error_code == code.value


def test_stored_arguments_that_no_longer_fit_are_a_serialization_error() -> None:
    handle = add.send(1).unwrap()
    Task.objects.filter(pk=handle.task_id).update(arguments={"a": "one"})
    run_all()
    error = handle.get(timeout_ms=1000).unwrap_err()
    assert error.error_code == OperationalErrorCode.WORKER_SERIALIZATION_ERROR


def test_user_error_code_and_data_come_back_as_sent() -> None:
    handle = user_error.send("OUT_OF_STOCK").unwrap()
    run_all()
    result = handle.get(timeout_ms=1000)
    assert result == TaskResult(
        err=TaskError(error_code="OUT_OF_STOCK", message="refused", data={"why": "OUT_OF_STOCK"})
    )
    assert Task.objects.get(pk=handle.task_id).status == "FAILED"


def test_wait_timeout_for_a_task_still_scheduled() -> None:
    handle = add.schedule(60, 1).unwrap()
    run_all()
    result = handle.get(timeout_ms=150)
    assert result.unwrap_err().error_code == RetrievalCode.WAIT_TIMEOUT
    assert Task.objects.get(pk=handle.task_id).status == "PENDING"


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_task_is_task_not_found(task_id: str) -> None:
    result = app.get_handle(task_id).get(timeout_ms=100)
    assert result.unwrap_err().error_code == RetrievalCode.TASK_NOT_FOUND
    assert app.get_handle(task_id).info().unwrap() is None


def test_corrupt_stored_result_is_result_deserialization_error() -> None:
    handle = add.send(1).unwrap()
    run_all()
    Task.objects.filter(pk=handle.task_id).update(result={"ok": "not an int"})
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OperationalErrorCode.RESULT_DESERIALIZATION_ERROR
    Task.objects.filter(pk=handle.task_id).update(result={"garbage": 1})
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OperationalErrorCode.RESULT_DESERIALIZATION_ERROR


def test_terminal_task_without_result_is_result_not_available() -> None:
    handle = add.send(1).unwrap()
    Task.objects.filter(pk=handle.task_id).update(status="COMPLETED", result=None)
    assert handle.get(timeout_ms=100).unwrap_err().error_code == RetrievalCode.RESULT_NOT_AVAILABLE


def test_database_error_on_get_and_info_is_broker_error() -> None:
    handle = add.send(1).unwrap()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE horsies_task RENAME TO horsies_task_away")
    try:
        result = handle.get(timeout_ms=100)
        info = handle.info()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE horsies_task_away RENAME TO horsies_task")
    assert result.unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR
    assert info.unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR


def test_rebuilt_handle_decodes_with_the_registered_types_and_info_lists_attempts() -> None:
    invoice = Invoice(uuid.uuid4(), date(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC), Decimal("1"), [])
    task_id = echo_invoice.send(invoice, 0).unwrap().task_id
    run_all()
    rebuilt = app.get_handle(task_id)
    assert isinstance(rebuilt.get(timeout_ms=100).unwrap(), Invoice)
    info = rebuilt.info(include_attempts=True).unwrap()
    assert isinstance(info, TaskInfo)
    assert (info.task_name, info.status, info.queue_name, info.priority, info.attempt) == (
        "tests.echo_invoice",
        "COMPLETED",
        "standard",
        50,
        1,
    )
    assert info.started_at is not None and info.finished_at is not None and info.worker_id
    assert info.attempts is not None
    assert [(a.number, a.outcome) for a in info.attempts] == [(1, "COMPLETED")]


def test_a_running_task_knows_its_id_attempt_and_claim_token() -> None:
    handle = whoami.send().unwrap()
    run_all()
    assert handle.get(timeout_ms=100).unwrap() == {"id": handle.task_id, "attempt": 1, "token": 1}


def test_a_task_calling_sys_exit_fails_instead_of_stopping_the_worker() -> None:
    from tests.taskapp.tasks import exits

    handle = exits.send().unwrap()
    after = add.send(1).unwrap()
    run_all()
    error = handle.get(timeout_ms=100).unwrap_err()
    assert error.error_code == OperationalErrorCode.UNHANDLED_EXCEPTION
    assert "SystemExit" in (error.message or "")
    assert after.get(timeout_ms=100).unwrap() == 1


def test_a_handle_rebuilt_inside_an_event_loop_keeps_its_types() -> None:
    from asgiref.sync import async_to_sync

    invoice = Invoice(uuid.uuid4(), date(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC), Decimal("1"), [])
    task_id = echo_invoice.send(invoice, 0).unwrap().task_id
    run_all()

    async def in_a_view() -> Any:
        return await app.get_handle(task_id).get_async(timeout_ms=1000)

    assert isinstance(async_to_sync(in_a_view)().unwrap(), Invoice)
