"""The broker's contract with its callers: driver errors leave it as `BrokerError` only, statuses
come from one enum, a claim leaves no setting behind, and a task put back to PENDING is on no worker."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from horsies_django import OperationalErrorCode
from horsies_django.broker import Broker, BrokerError, Finish, NewTask, get_broker
from horsies_django.models import ACTIVE, ENDED, READY, Task, TaskStatus
from tests.taskapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)

PACKAGE = Path(__file__).resolve().parents[2] / "horsies_django"


def _now() -> Any:
    return timezone.now()


def _new_task() -> NewTask:
    now = _now()
    return NewTask(
        id=uuid.uuid4(), name="tests.add", queue_name="default", priority=100, arguments_json='{"a": 1}',
        run_at=now, enqueued_at=now, good_until=None, max_retries=0,
    )  # fmt: skip


# Every public operation, called as the worker and the API call it.
OPERATIONS: dict[str, Callable[[Broker], object]] = {
    "enqueue_many": lambda b: b.enqueue_many([_new_task()]),
    "claim": lambda b: b.claim(worker_id="w", queues=None, limit=1, now=_now(), lease_until=_now()),
    "claim_capped": lambda b: b.claim_capped(
        worker_id="w",
        queues=None,
        limit=1,
        now=_now(),
        lease_until=_now(),
        queue_caps={"default": 1},
        cluster_cap=5,
        rate_limits={},
    ),  # fmt: skip
    "finish_many": lambda b: b.finish_many(
        [
            Finish(
                task_id=str(uuid.uuid4()),
                claim_token=1,
                attempt=1,
                status=TaskStatus.COMPLETED,
                result_json='{"ok": 1}',
                error_code=None,
                error_message="",
                error_traceback="",
                worker_id="w",
                started_at=_now(),
                finished_at=_now(),
                attempt_outcome="COMPLETED",
            )
        ]
    ),  # fmt: skip
    "renew_leases": lambda b: b.renew_leases(worker_id="w", held=[(str(uuid.uuid4()), 1)], lease_until=_now()),
    "expire_pending": lambda b: b.expire_pending(now=_now(), result={}, error_code="X", message=""),
    "recover_lost": lambda b: b.recover_lost(now=_now(), max_crash_reruns=1, crashed_result={}, message=""),
    "cancel": lambda b: b.cancel([uuid.uuid4()], now=_now(), result={}, message=""),
    "retry": lambda b: b.retry([uuid.uuid4()], now=_now()),
    "run_now": lambda b: b.run_now([uuid.uuid4()], now=_now()),
    "prune": lambda b: b.prune(completed_before=_now(), failed_before=_now(), limit=10),
    "fetch_outcome": lambda b: b.fetch_outcome(uuid.uuid4()),
}


@pytest.fixture
def no_task_table() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE horsies_task RENAME TO horsies_task_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE horsies_task_away RENAME TO horsies_task")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_missing_table_is_a_transient_broker_error_from_every_operation(operation: str, no_task_table: None) -> None:
    with pytest.raises(BrokerError) as raised:
        OPERATIONS[operation](get_broker())
    assert raised.value.missing_table and raised.value.transient
    assert raised.value.__cause__ is not None  # the driver's error is kept


def test_a_value_the_database_refuses_is_a_broker_error_that_is_not_transient() -> None:
    task = _new_task()
    bad = NewTask(**{**{f: getattr(task, f) for f in NewTask.__dataclass_fields__}, "name": "bad \ud800 name"})
    with pytest.raises(BrokerError) as raised:
        get_broker().enqueue_many([bad])
    assert not raised.value.transient and not raised.value.missing_table


def test_a_programming_error_is_not_swallowed() -> None:
    with pytest.raises(AttributeError):
        get_broker().enqueue_many([object()])  # type: ignore[list-item]


def test_the_result_waiter_translates_too(no_task_table: None) -> None:
    handle_id = str(uuid.uuid4())
    broker = get_broker()
    with broker.result_waiter(handle_id) as wait:
        wait(0.01)
    with pytest.raises(BrokerError):
        broker.fetch_outcome(uuid.UUID(handle_id))


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_claim_planner_setting_ends_with_the_claim() -> None:
    add.send(1).unwrap()
    now = _now()
    assert len(get_broker().claim(worker_id="w", queues=None, limit=1, now=now, lease_until=now)) == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone()[0] == "on"


@pytest.mark.parametrize("status", [TaskStatus.PENDING])
@pytest.mark.parametrize("how", ["retry", "release", "crash"])
def test_a_task_put_back_to_pending_is_on_no_worker(how: str, status: TaskStatus) -> None:
    task_id = add.send(1).unwrap().task_id
    broker = get_broker()
    now = _now()
    (claimed,) = broker.claim(worker_id="w1", queues=None, limit=1, now=now, lease_until=now + timedelta(minutes=1))
    finish = Finish(
        task_id=task_id, claim_token=claimed.claim_token, attempt=1, status=status, result_json=None,
        error_code="FLAKY" if how != "release" else None, error_message="", error_traceback="", worker_id="w1",
        started_at=now, finished_at=now, attempt_outcome=None if how == "release" else "FAILED",
        run_at=now + timedelta(seconds=30), release=how == "release", crash=how == "crash",
    )  # fmt: skip
    assert broker.finish_many([finish]) == {task_id}
    row = Task.objects.get(pk=task_id)
    assert (row.status, row.worker_id, row.claimed_at, row.started_at) == (TaskStatus.PENDING, None, None, None)


def test_a_task_whose_lease_ran_out_is_on_no_worker_once_requeued() -> None:
    task_id = add.send(1).unwrap().task_id
    broker = get_broker()
    now = _now()
    broker.claim(worker_id="w1", queues=None, limit=1, now=now, lease_until=now)
    lost = broker.recover_lost(now=now + timedelta(seconds=1), max_crash_reruns=3, crashed_result={}, message="")
    assert lost.requeued == [task_id]
    row = Task.objects.get(pk=task_id)
    assert (row.status, row.worker_id, row.claimed_at, row.started_at) == (TaskStatus.PENDING, None, None, None)


def test_the_status_sets_cover_every_status_once() -> None:
    assert READY | ACTIVE | ENDED == set(TaskStatus)
    assert not (READY & ACTIVE or READY & ENDED or ACTIVE & ENDED)


def test_no_status_is_spelled_as_a_string_literal_outside_the_enum() -> None:
    spelled = re.compile("[\"'](" + "|".join(TaskStatus.values) + ")[\"']")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for folder in ("broker", "worker")
        for path in sorted((PACKAGE / folder).glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if spelled.search(line)
    ]
    offenders += [
        f"app.py:{n}: {line.strip()}"
        for n, line in enumerate((PACKAGE / "app.py").read_text().splitlines(), start=1)
        if spelled.search(line)
    ]
    assert offenders == []


def test_horsies_worker_leaves_a_configured_logger_alone() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    library = logging.getLogger("horsies_django")
    mine = Collect(level=logging.INFO)
    library.addHandler(mine)
    level = library.level
    library.setLevel(logging.WARNING)
    stderr = io.StringIO()
    try:
        call_command("horsies_worker", "--burst", "--pool", "threads", stderr=stderr, stdout=io.StringIO())
        assert library.handlers == [mine]
        assert library.level == logging.WARNING  # the command did not turn it to -v's INFO
    finally:
        library.removeHandler(mine)
        library.setLevel(level)
    assert "worker starting" not in stderr.getvalue()
    assert not any("worker starting" in r.getMessage() for r in records)  # INFO, below the set level

    stderr = io.StringIO()
    call_command("horsies_worker", "--burst", "--pool", "threads", stderr=stderr, stdout=io.StringIO())
    assert "worker starting" in stderr.getvalue()  # unconfigured: the command's own handler


def test_get_and_info_inside_an_event_loop_answer_broker_error() -> None:
    handle = add.send(1).unwrap()

    async def inside() -> tuple[Any, Any]:
        return handle.get(timeout_ms=10), handle.info()

    result, info = asyncio.run(inside())
    assert result.unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR
    assert info.unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR


def test_get_with_a_broken_setting_answers_broker_error(settings: Any) -> None:
    handle = add.send(1).unwrap()
    settings.HORSIES = {**settings.HORSIES, "DATABASE": "nowhere"}
    result = handle.get(timeout_ms=10)
    assert result.unwrap_err().error_code == OperationalErrorCode.BROKER_ERROR
