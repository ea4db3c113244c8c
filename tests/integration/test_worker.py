"""The worker loop: order, exclusive claims, fenced finishes, lost-lease recovery, subprocess lifecycle."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone

from horsies_django.broker import Finish, get_broker
from horsies_django.models import Task, TaskAttempt
from horsies_django.worker import Worker
from tests.taskapp.models import Run
from tests.taskapp.tasks import add, record, sleep

from ..conftest import run_worker, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_smaller_priority_runs_first_then_earlier_run_at() -> None:
    late = add.with_options(priority=100).send(1).unwrap()
    first = add.with_options(priority=1).send(2).unwrap()
    middle_a = add.with_options(priority=50).send(3).unwrap()
    middle_b = add.with_options(priority=50).send(4).unwrap()
    Worker(burst=True, concurrency=1).run()
    order = list(Task.objects.order_by("claimed_at").values_list("id", flat=True))
    assert [str(i) for i in order] == [first.task_id, middle_a.task_id, middle_b.task_id, late.task_id]


def test_worker_takes_only_its_queues() -> None:
    default = add.send(1).unwrap()
    other = add.with_options(queue_name="reports").send(2).unwrap()
    stats = Worker(burst=True, queues=["reports"]).run()
    assert stats.completed == 1
    assert Task.objects.get(pk=other.task_id).status == "COMPLETED"
    assert Task.objects.get(pk=default.task_id).status == "PENDING"


def test_claims_are_batched_up_to_free_slots() -> None:
    for i in range(10):
        add.send(i)
    now = timezone.now()
    claimed = get_broker().claim(worker_id="w1", queues=None, limit=4, now=now, lease_until=now + timedelta(seconds=60))
    assert len(claimed) == 4
    assert Task.objects.filter(status="RUNNING", worker_id="w1").count() == 4
    assert all(task.attempt == 1 and task.claim_token == 1 for task in claimed)


def test_a_stale_claim_token_cannot_finish_the_task() -> None:
    handle = add.send(1).unwrap()
    broker = get_broker()
    now = timezone.now()
    (old,) = broker.claim(worker_id="old", queues=None, limit=1, now=now, lease_until=now - timedelta(seconds=1))
    lost = broker.recover_lost(now=timezone.now(), max_crash_reruns=3, crashed_result={}, message="")
    assert lost.requeued == [handle.task_id]
    (new,) = broker.claim(
        worker_id="new", queues=None, limit=1, now=timezone.now(), lease_until=timezone.now() + timedelta(seconds=60)
    )
    assert new.claim_token == old.claim_token + 1

    def finish(task: Any, worker: str, value: int) -> Finish:
        return Finish(
            task_id=task.id,
            claim_token=task.claim_token,
            attempt=task.attempt,
            status="COMPLETED",
            result_json=f'{{"ok": {value}}}',
            error_code=None,
            error_message="",
            error_traceback="",
            worker_id=worker,
            started_at=now,
            finished_at=timezone.now(),
            attempt_outcome="COMPLETED",
        )

    assert broker.finish_many([finish(old, "old", 111)]) == set()
    assert broker.finish_many([finish(new, "new", 222)]) == {handle.task_id}
    assert broker.finish_many([finish(new, "new", 333)]) == set()  # a duplicate finish is a no-op
    assert handle.get(timeout_ms=100).unwrap() == 222
    attempts = list(TaskAttempt.objects.filter(task_id=handle.task_id).values_list("number", "outcome", "worker_id"))
    assert attempts == [(1, "WORKER_LOST", "old"), (2, "COMPLETED", "new")]


def test_lost_task_runs_again_then_fails_as_worker_crashed_when_reruns_run_out() -> None:
    handle = add.send(1).unwrap()
    broker = get_broker()
    clock = timezone.now()
    for attempt in range(1, 3):
        clock += timedelta(seconds=10)
        (claimed,) = broker.claim(worker_id=f"w{attempt}", queues=None, limit=1, now=clock, lease_until=clock)
        assert claimed.attempt == attempt
        lost = broker.recover_lost(
            now=clock + timedelta(seconds=1),
            max_crash_reruns=1,
            crashed_result={
                "err": {"error_code": "WORKER_CRASHED", "message": "lost", "data": None, "exception": None}
            },
            message="lost",
        )
        expected = ([handle.task_id], []) if attempt == 1 else ([], [handle.task_id])
        assert (lost.requeued, lost.failed) == expected
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.error_code, row.attempt, row.crash_reruns) == ("FAILED", "WORKER_CRASHED", 2, 1)
    assert handle.get(timeout_ms=100).unwrap_err().error_code == "WORKER_CRASHED"


@pytest.mark.soak
def test_two_worker_processes_drain_500_tasks_and_none_runs_twice() -> None:
    for i in range(500):
        record.send(f"task-{i}")
    workers = [start_worker("--burst", "--concurrency", "4") for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert Task.objects.filter(status="COMPLETED").count() == 500
    assert Run.objects.count() == 500
    assert Run.objects.values("key").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert set(Task.objects.values_list("attempt", flat=True)) == {1}
    assert TaskAttempt.objects.count() == 500


def test_burst_worker_exits_zero_and_reports() -> None:
    add.send(1)
    add.send(2)
    completed = run_worker("--burst", "-v", "1")
    assert completed.returncode == 0, completed.stderr
    assert "2 completed, 0 failed" in completed.stdout


def test_ctrl_c_finishes_the_task_in_hand_then_exits_zero() -> None:
    handle = sleep.send(1500).unwrap()
    worker = start_worker("--concurrency", "1")
    deadline = time.monotonic() + 20
    while Task.objects.get(pk=handle.task_id).status != "RUNNING":
        assert time.monotonic() < deadline, "the worker never started the task"
        time.sleep(0.05)
    waiting = add.send(1).unwrap()  # sent after the stop below: must stay PENDING
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "finishing the tasks in hand" in err
    assert handle.get(timeout_ms=100).unwrap() == 1500
    assert Task.objects.get(pk=waiting.task_id).status == "PENDING"


def test_bad_command_line_arguments_are_refused() -> None:
    completed = run_worker("--concurrency", "0")
    assert completed.returncode != 0
    assert "must be at least 1" in completed.stderr
