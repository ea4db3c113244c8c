"""Workflows under real worker processes: two dependencies ending at once on two workers send their
fan-in once; a worker killed with SIGKILL mid-node costs a re-run of that node, not the workflow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from horsies_django import Ok, TaskNode, WorkflowHandle, WorkflowStatus, app
from horsies_django.models import Task, TaskAttempt, WorkflowNode
from tests.taskapp import workflow_tasks as wt
from tests.taskapp.models import Run

from ..conftest import run_worker, start_worker
from .test_reliability import stop, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def start(spec: Any) -> WorkflowHandle[Any]:
    result = spec.start()
    assert isinstance(result, Ok), result
    return result.unwrap()  # type: ignore[no-any-return]


def task_of(handle: WorkflowHandle[Any], node_id: str) -> Callable[[], Task | None]:
    def find() -> Task | None:
        info = {i.node_id: i for i in handle.tasks().unwrap()}[node_id]
        return None if info.task_id is None else Task.objects.get(pk=info.task_id)

    return find


def test_two_dependencies_ending_at_once_on_two_workers_send_the_fan_in_once(tmp_path: Path) -> None:
    # No prefetch: each worker holds exactly the one task it runs, so the two dependencies land on two workers.
    workers = [start_worker("--concurrency", "1", "--prefetch", "0") for _ in range(2)]
    try:
        for round_ in range(6):
            gate = tmp_path / f"gate-{round_}"
            left = TaskNode(fn=wt.recorded, kwargs={"key": f"left-{round_}", "gate": str(gate)}, node_id="left")
            right = TaskNode(fn=wt.recorded, kwargs={"key": f"right-{round_}", "gate": str(gate)}, node_id="right")
            fan_in = TaskNode(
                fn=wt.recorded, kwargs={"key": f"fan-in-{round_}"}, waits_for=[left, right], node_id="fan_in"
            )
            handle = start(app.workflow("race", tasks=[left, right, fan_in], output=fan_in))

            def both_running() -> bool:
                tasks = [task_of(handle, "left")(), task_of(handle, "right")()]  # noqa: B023
                return all(t is not None and t.status == "RUNNING" for t in tasks)

            wait_until(both_running, timeout=60, what="each worker to hold one dependency")
            held_by = {task_of(handle, node)().worker_id for node in ("left", "right")}  # type: ignore[union-attr]
            assert len(held_by) == 2, "both dependencies ran on one worker"
            gate.touch()  # both finish now, each in its own worker's finish transaction
            assert handle.get(timeout_ms=60_000).unwrap() == f"fan-in-{round_}"
            assert Run.objects.filter(key=f"fan-in-{round_}").count() == 1
            assert Task.objects.filter(name="wf.recorded", arguments__key=f"fan-in-{round_}").count() == 1
            fan_in_row = WorkflowNode.objects.get(workflow_id=handle.workflow_id, node_id="fan_in")
            assert (fan_in_row.deps_ended, fan_in_row.deps_succeeded, fan_in_row.status) == (2, 2, "COMPLETED")
    finally:
        for worker in workers:
            code, err = stop(worker)
            assert code == 0, err


def test_kill_9_mid_node_re_runs_the_node_and_the_workflow_completes_once() -> None:
    first = TaskNode(fn=wt.recorded, kwargs={"key": "first", "sleep_ms": 1500}, node_id="first")
    second = TaskNode(fn=wt.recorded, kwargs={"key": "second"}, waits_for=[first], node_id="second")
    handle = start(app.workflow("survivor", tasks=[first, second], output=second))
    doomed = start_worker("--concurrency", "1")
    try:
        wait_until(
            lambda: (task := task_of(handle, "first")()) is not None and task.status == "RUNNING",
            timeout=60,
            what="the first worker to start the first node",
        )
    finally:
        doomed.kill()  # SIGKILL: nothing is released or reported
        doomed.communicate(timeout=10)
    assert handle.status().unwrap() == WorkflowStatus.RUNNING
    survivor = start_worker("--concurrency", "1")
    try:
        result = handle.get(timeout_ms=60_000)
    finally:
        code, err = stop(survivor)
    assert code == 0, err
    assert result.unwrap() == "second"
    assert handle.status().unwrap() == WorkflowStatus.COMPLETED
    first_task = task_of(handle, "first")()
    assert first_task is not None
    outcomes = list(TaskAttempt.objects.filter(task_id=first_task.id).values_list("number", "outcome"))
    assert outcomes == [(1, "WORKER_LOST"), (2, "COMPLETED")]
    # The second node was sent once and ran once; the workflow counted each node once.
    assert Task.objects.filter(name="wf.recorded").count() == 2
    assert Run.objects.filter(key="second").count() == 1
    assert {i.node_id: i.status for i in handle.tasks().unwrap()} == {"first": "COMPLETED", "second": "COMPLETED"}
    assert handle.results().unwrap()["first"] is not None


def test_typed_results_flow_through_the_process_pool() -> None:
    fetch = TaskNode(fn=wt.fetch, kwargs={"url": "pool"})
    measure = TaskNode(fn=wt.measure, waits_for=[fetch], args_from={"raw": fetch})
    save = TaskNode(fn=wt.save, kwargs={"key": "p"}, waits_for=[measure], args_from={"size": measure})
    handle = start(app.workflow("pooled", tasks=[fetch, measure, save], output=save))
    done = run_worker("--pool", "processes", "--concurrency", "2", "--burst")
    assert done.returncode == 0, done.stderr
    assert handle.get(timeout_ms=30_000).unwrap() == wt.Saved(key="p", size=len("<html>pool</html>"))
