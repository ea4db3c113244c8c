"""A task survives a dead worker, a restart, a slow function and a deploy: real worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.db import connection

from horsies_django import OperationalErrorCode, OutcomeCode
from horsies_django.models import Task, TaskAttempt, WorkerProcess
from horsies_django.worker import Worker
from tests.taskapp.models import Run
from tests.taskapp.tasks import (
    add,
    async_add,
    crash,
    exponential,
    flaky,
    mapped,
    record,
    sleep,
    timeout_retried,
    times_out,
)

from ..conftest import run_worker, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def status(task_id: str) -> str:
    return Task.objects.get(pk=task_id).status


def stop(worker: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    worker.send_signal(sig)
    _, err = worker.communicate(timeout=30)
    return worker.returncode, err


def attempts(task_id: str) -> list[tuple[int, str]]:
    return list(TaskAttempt.objects.filter(task_id=task_id).values_list("number", "outcome"))


# -- crashes ---------------------------------------------------------------------------------


def test_kill_9_of_a_worker_mid_task_and_another_worker_completes_it() -> None:
    handle = record.send("survivor", sleep_ms=1500).unwrap()
    first = start_worker("--concurrency", "1")
    try:
        wait_until(lambda: status(handle.task_id) == "RUNNING", what="the first worker to start the task")
    finally:
        first.kill()  # SIGKILL: no chance to release or report anything
        first.communicate(timeout=10)
    second = start_worker("--concurrency", "1")
    try:
        result = handle.get(timeout_ms=20000)
    finally:
        code, err = stop(second)
    assert result.unwrap() == "survivor"
    assert code == 0, err
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.attempt, row.crash_reruns) == ("COMPLETED", 2, 1)
    assert attempts(handle.task_id) == [(1, "WORKER_LOST"), (2, "COMPLETED")]


def test_a_child_process_that_dies_is_rerun_then_ends_worker_crashed() -> None:
    handle = crash.send(9).unwrap()
    healthy = add.send(1, 2).unwrap()
    worker = start_worker("--concurrency", "2")
    try:
        result = handle.get(timeout_ms=30000)
        assert healthy.get(timeout_ms=10000).unwrap() == 3
    finally:
        code, err = stop(worker)
    assert code == 0, err
    assert result.unwrap_err().error_code == OperationalErrorCode.WORKER_CRASHED
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.attempt, row.crash_reruns) == ("FAILED", 3, 2)  # max_crash_reruns is 2 in tests
    assert [outcome for _, outcome in attempts(handle.task_id)] == ["WORKER_LOST", "WORKER_LOST", "FAILED"]


# -- graceful shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_task_lets_it_complete_and_exits_zero(sig: int) -> None:
    handle = record.send("finish-me", sleep_ms=1000).unwrap()
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: status(handle.task_id) == "RUNNING", what="the task to start")
    code, err = stop(worker, sig)
    assert code == 0, err
    assert status(handle.task_id) == "COMPLETED"
    assert Run.objects.filter(key="finish-me").count() == 1


def test_shutdown_timeout_releases_the_task_without_counting_the_attempt() -> None:
    handle = record.send("too-slow", sleep_ms=30000).unwrap()
    worker = start_worker("--concurrency", "1", "--shutdown-timeout", "0.5")
    wait_until(lambda: status(handle.task_id) == "RUNNING", what="the task to start")
    started = time.monotonic()
    code, err = stop(worker)
    assert code == 0, err
    assert time.monotonic() - started < 15
    row = Task.objects.get(pk=handle.task_id)
    # Back to PENDING means on no worker: the admin must not show it as running somewhere.
    assert (row.status, row.attempt, row.worker_id, row.claimed_at, row.started_at) == ("PENDING", 0, None, None, None)
    assert attempts(handle.task_id) == []
    assert Run.objects.count() == 0  # the child was stopped, not left to finish


def test_second_signal_stops_at_once_and_the_task_runs_again_later() -> None:
    handle = record.send("interrupted", sleep_ms=30000).unwrap()
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: status(handle.task_id) == "RUNNING", what="the task to start")
    worker.send_signal(signal.SIGINT)
    time.sleep(0.3)
    code, err = stop(worker, signal.SIGINT)
    assert code != 0
    assert "Stopping now" in err
    assert status(handle.task_id) == "RUNNING"  # held until its lease expires, then re-run
    Task.objects.filter(pk=handle.task_id).update(arguments={"key": "interrupted", "sleep_ms": 0})
    time.sleep(2.2)  # the test lease is 2 s
    Worker(burst=True).run()
    assert handle.get(timeout_ms=1000).unwrap() == "interrupted"


def test_max_tasks_per_child_replaces_the_child_process() -> None:
    for i in range(6):
        record.send(f"recycled-{i}")
    completed = run_worker("--burst", "--concurrency", "1", "--max-tasks-per-child", "2")
    assert completed.returncode == 0, completed.stderr
    pids = list(Run.objects.order_by("at").values_list("worker_pid", flat=True))
    assert len(pids) == 6
    assert len(set(pids)) == 3  # a fresh child every two tasks
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


def test_worker_registers_heartbeats_and_records_its_stop() -> None:
    worker = start_worker("--concurrency", "2", "--queues", "default,standard")
    try:
        wait_until(lambda: WorkerProcess.objects.filter(pid=worker.pid).exists(), what="the worker row")
        first = WorkerProcess.objects.get(pid=worker.pid)
        assert (first.queues, first.concurrency, first.pool, first.stopped_at) == (
            ["default", "standard"],
            2,
            "processes",
            None,
        )
        time.sleep(0.6)
        assert WorkerProcess.objects.get(pid=worker.pid).last_heartbeat_at > first.last_heartbeat_at
    finally:
        code, err = stop(worker)
    assert code == 0, err
    assert WorkerProcess.objects.get(pid=worker.pid).stopped_at is not None


# -- retries, exception mapping, timeouts -------------------------------------------------------------


def test_retries_follow_the_fixed_intervals_then_succeed() -> None:
    handle = flaky.send("twice", fail_times=2).unwrap()
    with_worker(lambda: handle.get(timeout_ms=20000))
    assert handle.get(timeout_ms=100).unwrap() == 3
    rows = list(TaskAttempt.objects.filter(task_id=handle.task_id).order_by("number"))
    assert [(a.number, a.outcome, a.error_code) for a in rows] == [
        (1, "FAILED", "FLAKY"),
        (2, "FAILED", "FLAKY"),
        (3, "COMPLETED", None),
    ]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in zip(rows, rows[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps


def test_retries_exhausted_end_with_the_last_error_code() -> None:
    handle = flaky.send("never", fail_times=99, raise_instead=True).unwrap()
    with_worker(lambda: handle.get(timeout_ms=20000))
    error = handle.get(timeout_ms=100).unwrap_err()
    assert error.error_code == OperationalErrorCode.UNHANDLED_EXCEPTION
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.attempt, row.max_retries) == ("FAILED", 4, 3)
    assert Run.objects.filter(key="never").count() == 4


def test_exponential_backoff_doubles_the_wait() -> None:
    handle = exponential.send("exp").unwrap()
    with_worker(lambda: handle.get(timeout_ms=20000))
    rows = list(TaskAttempt.objects.filter(task_id=handle.task_id).order_by("number"))
    assert len(rows) == 3
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in zip(rows, rows[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps
    assert handle.get(timeout_ms=100).unwrap_err().error_code == "FLAKY"


def test_exception_mapper_turns_an_exception_into_a_code_and_user_codes_are_not_retried() -> None:
    handle = mapped.send("missing").unwrap()
    Worker(burst=True).run()
    error = handle.get(timeout_ms=100).unwrap_err()
    assert error.error_code == "MISSING_KEY"
    assert "KeyError" in (error.message or "")


def test_exception_mapper_from_settings_matches_subclasses(settings: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "EXCEPTION_MAPPER": {"builtins.ArithmeticError": "MATH"}}
    from tests.taskapp.tasks import divide

    by_zero = divide.send(1, 0).unwrap()
    fine = divide.send(1, 4).unwrap()
    Worker(burst=True).run()
    error = by_zero.get(timeout_ms=100).unwrap_err()
    assert (error.error_code, error.message) == ("MATH", "ZeroDivisionError: division by zero")
    assert fine.get(timeout_ms=100).unwrap() == 0.25


def test_timeout_kills_the_child_and_reports_task_timeout() -> None:
    handle = times_out.send(5000, key="late").unwrap()
    worker = start_worker("--concurrency", "1")
    try:
        result = handle.get(timeout_ms=15000)
        time.sleep(0.5)
    finally:
        code, err = stop(worker)
    assert code == 0, err
    error = result.unwrap_err()
    assert error.error_code == OutcomeCode.TASK_TIMEOUT
    assert "400 ms" in (error.message or "")
    assert Run.objects.filter(key="late").count() == 0  # killed before it could finish


def test_timeout_in_the_thread_pool_reports_task_timeout() -> None:
    handle = times_out.send(1200).unwrap()
    Worker(burst=True).run()
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OutcomeCode.TASK_TIMEOUT


def test_a_timeout_listed_in_the_policy_is_retried() -> None:
    handle = timeout_retried.send(1000).unwrap()
    with_worker(lambda: handle.get(timeout_ms=20000))
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OutcomeCode.TASK_TIMEOUT
    assert [outcome for _, outcome in attempts(handle.task_id)] == ["FAILED", "FAILED"]


def test_a_thread_that_timed_out_is_not_retried_while_it_still_runs() -> None:
    """A thread cannot be stopped: the timeout's retry waits for it, or the task would run twice at once."""
    from tests.taskapp.tasks import timeout_retried_logged

    from ..conftest import ThreadWorker

    handle = timeout_retried_logged.send(1000, "overlap").unwrap()
    with ThreadWorker(burst=False, concurrency=2):  # a free slot, where the retry could start at once
        result = handle.get(timeout_ms=20000)
    assert result.unwrap_err().error_code == OutcomeCode.TASK_TIMEOUT
    events = [run.key for run in Run.objects.filter(key__startswith="overlap:").order_by("at", "id")]
    assert events[:3] == ["overlap:start", "overlap:end", "overlap:start"], events
    assert [outcome for _, outcome in attempts(handle.task_id)] == ["FAILED", "FAILED"]


def test_async_task_runs_on_an_event_loop() -> None:
    handle = async_add.send(2, 3).unwrap()
    Worker(burst=True).run()
    assert handle.get(timeout_ms=100).unwrap() == 5


# -- cancel ---------------------------------------------------------------------------------------------


def test_cancel_of_a_running_task_kills_it_and_reports_task_cancelled() -> None:
    handle = record.send("cancel-me", sleep_ms=3000).unwrap()
    follow_up = add.send(1, 1).unwrap()
    worker = start_worker("--concurrency", "1")
    try:
        wait_until(lambda: status(handle.task_id) == "RUNNING", what="the task to start")
        assert handle.cancel() is True
        assert follow_up.get(timeout_ms=10000).unwrap() == 2  # the slot was freed: the child was killed
        time.sleep(3.5)
    finally:
        code, err = stop(worker)
    assert code == 0, err
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OutcomeCode.TASK_CANCELLED
    assert status(handle.task_id) == "CANCELLED"
    assert Run.objects.filter(key="cancel-me").count() == 0


# -- database outage ---------------------------------------------------------------------------------


def restart_postgres() -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(not shutil.which("pg_ctlcluster"), reason="needs a local PostgreSQL cluster it can restart")
def test_postgresql_restart_under_a_worker_loses_no_task() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL restart only applies to the PostgreSQL run")
    # The tasks themselves do not touch the database: any loss would be the queue's.
    handles = [sleep.send(100 + i).unwrap() for i in range(30)]
    worker = start_worker("--concurrency", "2")
    try:
        wait_until(lambda: Task.objects.filter(status="COMPLETED").count() >= 3, what="some progress")
        connection.close()
        restart_postgres()
        time.sleep(1)
        connection.close()
        results = [handle.get(timeout_ms=60000) for handle in handles]
        assert worker.poll() is None, "the worker died with the database"
    finally:
        connection.close()
        code, err = stop(worker)
    assert code == 0, err
    assert "database error" in err
    assert [result.unwrap() for result in results] == [100 + i for i in range(30)]
    assert Task.objects.filter(status="COMPLETED").count() == 30


def with_worker(wait: Callable[[], Any]) -> None:
    """Run a thread-pool worker in this process while `wait` blocks on a result."""
    from ..conftest import ThreadWorker

    with ThreadWorker(burst=False):
        wait()


def test_no_retry_is_scheduled_past_good_until() -> None:
    from datetime import datetime

    good_until = datetime.now(UTC) + timedelta(milliseconds=500)
    handle = flaky.with_options(good_until=good_until).send("deadline", fail_times=99).unwrap()
    with_worker(lambda: handle.get(timeout_ms=20000))
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.error_code) == ("FAILED", "FLAKY")  # failed, not left pending to expire
    assert row.attempt in (1, 2)  # the 0.3 s retry fits before the deadline only if the first run was quick
