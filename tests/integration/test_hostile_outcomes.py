"""Hostile outcomes and stored rows between innocent tasks (#9): the innocent tasks complete once,
with one attempt each; each hostile one ends with its code, counted as one attempt; the worker
never stops. Run on SQLite and PostgreSQL, in-process and as real worker subprocesses."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from horsies_django import OperationalErrorCode
from horsies_django.broker import BrokerError, Finish, get_broker
from horsies_django.models import Task, TaskAttempt, TaskStatus
from horsies_django.worker import Worker
from horsies_django.worker.outcomes import save_finishes
from tests.taskapp.hostile import (
    hostile_code,
    hostile_error_text,
    hostile_ok,
    unprintable,
    unprintable_code,
    unprintable_message,
)
from tests.taskapp.models import Run
from tests.taskapp.tasks import add, boom, record, sleep, user_error

from ..conftest import ThreadWorker, start_worker

pytestmark = pytest.mark.django_db(transaction=True)

SERIALIZATION = OperationalErrorCode.WORKER_SERIALIZATION_ERROR.value
UNHANDLED = OperationalErrorCode.UNHANDLED_EXCEPTION.value


@dataclass(frozen=True)
class Poison:
    label: str
    send: Callable[[], str]  # sends the task, returns its id
    code: str  # the error code it must end with
    message_has: str = ""


def _stored_arguments(raw: str) -> Callable[[], str]:
    """Send an innocent task, then overwrite its stored arguments with `raw` (as a tampered or
    hand-written row would hold them)."""

    def send() -> str:
        task_id = add.send(1, 2).unwrap().task_id
        column = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE horsies_task SET arguments = {column} WHERE id = %s",
                [raw, get_broker().db_uuid(uuid.UUID(task_id))],
            )
        return task_id

    return send


POISONS = [
    Poison("150-character error code", lambda: user_error.send("C" * 150).unwrap().task_id, SERIALIZATION, "at most"),
    Poison("hostile code: long", lambda: hostile_code.send("long").unwrap().task_id, SERIALIZATION),
    Poison("hostile code: NUL", lambda: hostile_code.send("nul").unwrap().task_id, SERIALIZATION),
    Poison("hostile code: surrogate", lambda: hostile_code.send("surrogate").unwrap().task_id, SERIALIZATION),
    Poison("NUL in error message", lambda: hostile_error_text.send("nul").unwrap().task_id, "HOSTILE_TEXT", "\ufffd"),
    Poison("surrogate in message", lambda: hostile_error_text.send("surrogate").unwrap().task_id, "HOSTILE_TEXT"),
    Poison("NUL and surrogate", lambda: hostile_error_text.send("both").unwrap().task_id, "HOSTILE_TEXT"),
    Poison("NUL in ok result", lambda: hostile_ok.send("nul").unwrap().task_id, SERIALIZATION, "NUL"),
    Poison("surrogate in ok result", lambda: hostile_ok.send("surrogate").unwrap().task_id, SERIALIZATION),
    Poison("surrogate in a result key", lambda: hostile_ok.send("key_surrogate").unwrap().task_id, SERIALIZATION),
    Poison("NaN inside a dict result", lambda: hostile_ok.send("nan").unwrap().task_id, SERIALIZATION, "NaN"),
    Poison("inf inside a dict result", lambda: hostile_ok.send("inf").unwrap().task_id, SERIALIZATION),
    Poison("-inf inside a list result", lambda: hostile_ok.send("minus_inf").unwrap().task_id, SERIALIZATION),
    Poison("result nested too deep", lambda: hostile_ok.send("deep").unwrap().task_id, SERIALIZATION),
    Poison("exception whose __str__ raises", lambda: unprintable.send().unwrap().task_id, UNHANDLED, "__str__"),
    # pydantic keeps the code as a plain str, so it is stored as written.
    Poison("error code whose __str__ raises", lambda: unprintable_code.send().unwrap().task_id, "X"),
    Poison("message that is not a str", lambda: unprintable_message.send().unwrap().task_id, UNHANDLED),
    Poison("stored arguments: a list", _stored_arguments("[1, 2]"), SERIALIZATION, "not a JSON object"),
    Poison("stored arguments: a string", _stored_arguments('"ab"'), SERIALIZATION, "not a JSON object"),
    Poison("stored arguments: a number", _stored_arguments("5"), SERIALIZATION, "not a JSON object"),
    Poison("stored arguments: null", _stored_arguments("null"), SERIALIZATION, "not a JSON object"),
    Poison("stored arguments: wrong type", _stored_arguments('{"a": [[]]}'), SERIALIZATION),
    Poison("stored arguments: unknown name", _stored_arguments('{"zz": 1}'), SERIALIZATION),
]


def send_between_innocents(poisons: list[Poison]) -> tuple[list[str], dict[str, Poison]]:
    innocents = [add.send(0, 0).unwrap().task_id]
    sent: dict[str, Poison] = {}
    for n, poison in enumerate(poisons, start=1):
        sent[poison.send()] = poison
        innocents.append(add.send(n, n).unwrap().task_id)
    return innocents, sent


def assert_isolated(innocents: list[str], poisoned: dict[str, Poison]) -> None:
    rows = {str(row.pk): row for row in Task.objects.all()}
    history = {task_id: [] for task_id in rows}  # type: dict[str, list[tuple[str, str | None]]]
    for attempt in TaskAttempt.objects.order_by("number"):
        history[str(attempt.task_id)].append((attempt.outcome, attempt.error_code))
    for n, task_id in enumerate(innocents):
        row = rows[task_id]
        assert (row.status, row.attempt, row.result) == (TaskStatus.COMPLETED, 1, {"ok": 2 * n}), row
        assert history[task_id] == [("COMPLETED", None)]
    for task_id, poison in poisoned.items():
        row = rows[task_id]
        assert (row.status, row.attempt, row.error_code) == (TaskStatus.FAILED, 1, poison.code), (
            poison.label,
            row.error_code,
            row.error_message,
        )
        assert poison.message_has in row.error_message, (poison.label, row.error_message)
        assert history[task_id] == [("FAILED", poison.code)], poison.label
        assert row.result["err"]["error_code"] == poison.code, poison.label


@pytest.mark.parametrize("poison", POISONS, ids=[p.label for p in POISONS])
def test_one_poison_between_innocent_tasks(poison: Poison) -> None:
    innocents, poisoned = send_between_innocents([poison, poison])
    stats = Worker(burst=True, pool="threads", concurrency=4).run()
    assert_isolated(innocents, poisoned)
    assert (stats.completed, stats.failed, stats.stale_finishes) == (len(innocents), len(poisoned), 0)


def test_all_poisons_at_once_share_batches_with_innocent_tasks() -> None:
    innocents, poisoned = send_between_innocents(POISONS)
    Worker(burst=True, pool="threads", concurrency=8).run()
    assert_isolated(innocents, poisoned)


# -- a batch the database refuses is split ---------------------------------------------------------


def claimed_finishes(count: int, **poison: Any) -> list[Finish]:
    """Claim `count` innocent tasks and build their finishes; the middle one gets `poison`."""
    for n in range(count):
        add.send(n, 0).unwrap()
    broker = get_broker()
    now = timezone.now()
    claimed = broker.claim(worker_id="w", queues=None, limit=count, now=now, lease_until=now + timedelta(minutes=5))
    assert len(claimed) == count
    finishes = [
        Finish(
            task_id=task.id,
            claim_token=task.claim_token,
            attempt=task.attempt,
            status=TaskStatus.COMPLETED,
            result_json='{"ok": 1}',
            error_code=None,
            error_message="",
            error_traceback="",
            worker_id="w",
            started_at=now,
            finished_at=now,
            attempt_outcome="COMPLETED",
        )  # fmt: skip
        for task in claimed
    ]
    middle = finishes[count // 2]
    finishes[count // 2] = Finish(**{**{f: getattr(middle, f) for f in Finish.__dataclass_fields__}, **poison})
    return finishes


UNSTORABLE_FINISHES = {
    # Refused by every database: the driver cannot encode a lone surrogate.
    "surrogate in message": {"status": TaskStatus.FAILED, "error_code": "X", "error_message": "\ud800"},
    "surrogate in result": {"result_json": '{"ok": "\ud800"}'},
}
POSTGRES_ONLY_FINISHES = {
    "150-character code": {"status": TaskStatus.FAILED, "error_code": "C" * 150, "result_json": '{"err": {}}'},
    "NUL in message": {"status": TaskStatus.FAILED, "error_code": "X", "error_message": "a\x00b"},
    "NUL in result": {"result_json": '{"ok": "\\u0000"}'},
}


@pytest.mark.parametrize("label", [*UNSTORABLE_FINISHES, *POSTGRES_ONLY_FINISHES])
def test_a_refused_row_is_split_off_and_failed_alone(label: str) -> None:
    if label in POSTGRES_ONLY_FINISHES and connection.vendor != "postgresql":
        pytest.skip("SQLite stores this value")
    finishes = claimed_finishes(9, **{**UNSTORABLE_FINISHES, **POSTGRES_ONLY_FINISHES}[label])
    refused = finishes[len(finishes) // 2].task_id
    with pytest.raises(BrokerError) as raised:
        get_broker().finish_many(finishes)  # as one batch the database refuses it whole
    assert not raised.value.transient
    assert Task.objects.filter(status=TaskStatus.COMPLETED).count() == 0

    saved = save_finishes(get_broker(), finishes)
    assert saved.error is None and saved.unsaved == []
    assert saved.applied == {f.task_id for f in finishes}
    for finish in finishes:
        row = Task.objects.get(pk=finish.task_id)
        if finish.task_id == refused:
            assert (row.status, row.error_code) == (TaskStatus.FAILED, SERIALIZATION)
            assert "refused" in row.error_message
            assert row.result["err"]["error_code"] == SERIALIZATION
        else:
            assert (row.status, row.result) == (TaskStatus.COMPLETED, {"ok": 1})
        assert list(TaskAttempt.objects.filter(task_id=finish.task_id).values_list("outcome", flat=True)) == [
            "FAILED" if finish.task_id == refused else "COMPLETED"
        ]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_lost_connection_keeps_the_whole_batch_for_a_later_try() -> None:
    finishes = claimed_finishes(4)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, user=settings["USER"] or "postgres",
        dbname=settings["NAME"], autocommit=True,
    ) as other:  # fmt: skip
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    saved = save_finishes(get_broker(), finishes)
    assert saved.error is not None and saved.error.transient
    assert saved.unsaved == finishes and saved.written == []
    connection.close()
    assert Task.objects.filter(status=TaskStatus.RUNNING).count() == 4  # nothing written, nothing failed
    again = save_finishes(get_broker(), saved.unsaved)
    assert again.error is None and again.applied == {f.task_id for f in finishes}


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_a_locked_database_keeps_the_whole_batch_for_a_later_try() -> None:
    import sqlite3

    finishes = claimed_finishes(4)
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("PRAGMA busy_timeout = 50")
    try:
        locker.execute("BEGIN IMMEDIATE")
        saved = save_finishes(get_broker(), finishes)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert saved.error is not None and saved.error.transient, saved.error
    assert saved.unsaved == finishes and saved.written == []
    assert Task.objects.filter(status=TaskStatus.RUNNING).count() == 4
    connection.close()


def test_stopping_while_every_finish_fails_does_not_hang(caplog: pytest.LogCaptureFixture) -> None:
    handle = sleep.send(1000).unwrap()
    try:
        with ThreadWorker(pool="threads", concurrency=1, shutdown_timeout_s=1.0):
            wait_until(lambda: Task.objects.get(pk=handle.task_id).status == TaskStatus.RUNNING, what="a start")
            with connection.cursor() as cursor:  # a forgotten migrate, as the worker sees it
                cursor.execute("ALTER TABLE horsies_task RENAME TO horsies_task_away")
        # ThreadWorker's exit failed the test if the worker had not stopped.
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE horsies_task_away RENAME TO horsies_task")
    row = Task.objects.get(pk=handle.task_id)
    assert row.status == TaskStatus.RUNNING  # never stored: it runs again once its lease runs out
    assert not TaskAttempt.objects.filter(task_id=handle.task_id).exists()
    told = [r for r in caplog.records if "run `manage.py migrate`" in r.getMessage()]
    assert len(told) == 1 and told[0].levelname == "ERROR"


# -- real worker processes -------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(worker: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    worker.send_signal(sig)
    _, err = worker.communicate(timeout=60)
    return worker.returncode, err


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_worker_process_isolates_poison_and_logs_each_failure(pool: str) -> None:
    poisons = [p for p in POISONS if "stored arguments: a" in p.label or "code" in p.label or "__str__" in p.label]
    poisons += [p for p in POISONS if "NUL" in p.label or "NaN" in p.label]
    innocents, poisoned = send_between_innocents(poisons)
    raised = boom.send("loud").unwrap().task_id
    worker = start_worker("--pool", pool, "--concurrency", "3")
    try:
        wait_until(
            lambda: (
                Task.objects.filter(status__in=[TaskStatus.COMPLETED, TaskStatus.FAILED]).count()
                == len(innocents) + len(poisoned) + 1
            ),
            what="every task to end",
        )
    finally:
        code, err = stop(worker)
    assert code == 0, err
    assert_isolated(innocents, poisoned)
    # At the default verbosity a final failure is an ERROR line naming the task, with its traceback.
    assert f"ERROR horsies_django.worker: task failed name=tests.boom id={raised} attempt=1" in err, err
    assert "ValueError: loud" in err
    assert "Traceback" in err


def test_sigterm_holds_a_thread_task_until_it_returns_so_it_never_runs_twice() -> None:
    handle = record.send("held", sleep_ms=4000).unwrap()
    first = start_worker("--pool", "threads", "--concurrency", "1", "--shutdown-timeout", "0.2")
    second: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: Task.objects.get(pk=handle.task_id).status == TaskStatus.RUNNING, what="the task to start")
        first.send_signal(signal.SIGTERM)
        # A second worker looks for work the whole time; the lease (2 s in tests) is renewed.
        second = start_worker("--pool", "threads", "--concurrency", "1")
        _, err = first.communicate(timeout=60)
        code = first.returncode
    finally:
        if second is not None:
            second_code, second_err = stop(second)
    assert code == 0, err
    assert second_code == 0, second_err
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.attempt, row.claim_token) == (TaskStatus.COMPLETED, 1, 1)
    assert Run.objects.filter(key="held").count() == 1
    assert list(TaskAttempt.objects.filter(task_id=handle.task_id).values_list("outcome", flat=True)) == ["COMPLETED"]
