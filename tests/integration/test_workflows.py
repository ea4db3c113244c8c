"""Workflows end to end with an in-process worker: chains, fan-out/fan-in, joins, failures, pause,
resume, cancel, and the refusals that write nothing. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from horsies_django import (
    Err,
    HandleErrorCode,
    Ok,
    OnError,
    RetrievalCode,
    SuccessCase,
    SuccessPolicy,
    TaskNode,
    TaskResult,
    WorkflowCode,
    WorkflowDefinition,
    WorkflowHandle,
    WorkflowStartErrorCode,
    WorkflowStatus,
    app,
    from_node,
)
from horsies_django.models import Task, Workflow, WorkflowNode
from horsies_django.worker import Worker
from tests.taskapp import workflow_tasks as wt

pytestmark = pytest.mark.django_db(transaction=True)


def drain() -> None:
    """Run every ready task, and every task their workflows send, until none is left."""
    Worker(burst=True, concurrency=4, run_scheduler=False).run()


def started(spec: Any) -> WorkflowHandle[Any]:
    match spec.start():
        case Ok(handle):
            return handle  # type: ignore[no-any-return]
        case Err(error):
            raise AssertionError(f"start failed: {error}")
    raise AssertionError("unreachable")


def node_status(handle: WorkflowHandle[Any]) -> dict[str, str]:
    return {info.node_id: info.status for info in handle.tasks().unwrap()}


def etl() -> tuple[TaskNode[Any], TaskNode[Any], TaskNode[wt.Saved]]:
    fetch = TaskNode(fn=wt.fetch, kwargs={"url": "example.org"})
    measure = TaskNode(fn=wt.measure, waits_for=[fetch], args_from={"raw": fetch})
    save = TaskNode(fn=wt.save, kwargs={"key": "k1"}, waits_for=[measure], args_from={"size": measure})
    return fetch, measure, save


# -- chains and typed results ------------------------------------------------------------------


def test_chain_passes_typed_results_and_returns_the_output_node() -> None:
    fetch, measure, save = etl()
    handle = started(app.workflow("etl", tasks=[fetch, measure, save], output=save, on_error=OnError.FAIL))
    assert handle.status().unwrap() == WorkflowStatus.RUNNING
    assert handle.get(timeout_ms=0).unwrap_err().error_code == RetrievalCode.WAIT_TIMEOUT
    drain()
    result = handle.get(timeout_ms=10_000)
    assert result.unwrap() == wt.Saved(key="k1", size=len("<html>example.org</html>"))
    assert handle.status().unwrap() == WorkflowStatus.COMPLETED
    assert handle.result_for(measure).unwrap() == 24
    assert handle.result_for("wf.fetch").unwrap() == "<html>example.org</html>"
    results = handle.results().unwrap()
    assert results["wf.save"] == TaskResult(ok=wt.Saved(key="k1", size=24))
    assert node_status(handle) == {"wf.fetch": "COMPLETED", "wf.measure": "COMPLETED", "wf.save": "COMPLETED"}
    # Each node ran exactly one task, and the tasks are the ones the nodes name.
    infos = handle.tasks().unwrap()
    assert Task.objects.count() == 3
    assert {str(t.id) for t in Task.objects.all()} == {info.task_id for info in infos}
    row = Workflow.objects.get(pk=handle.workflow_id)
    assert (row.nodes_done, row.nodes_total, row.finished_at is not None) == (3, 3, True)


def test_from_node_wires_args_from_and_waits_for_in_one_step() -> None:
    fetch = wt.fetch.node()(url="example.org")
    measure = wt.measure.node()(raw=from_node(fetch))
    save = wt.save.node()(key="k1", size=from_node(measure))
    assert (measure.waits_for, measure.args_from, measure.kwargs) == ([fetch], {"raw": fetch}, {})
    assert (save.waits_for, save.args_from, save.kwargs) == ([measure], {"size": measure}, {"key": "k1"})
    handle = started(app.workflow("etl", tasks=[fetch, measure, save], output=save))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == wt.Saved(key="k1", size=len("<html>example.org</html>"))


@pytest.mark.parametrize("upstream", ["fetch", None, float("nan"), "\ud800"])
def test_from_node_of_something_not_a_node_is_refused_at_start(upstream: Any) -> None:
    measure = wt.measure.node()(raw=from_node(upstream))
    assert app.workflow("bad", tasks=[measure]).start().unwrap_err().code == WorkflowStartErrorCode.VALIDATION_FAILED
    assert not Workflow.objects.exists() and not Task.objects.exists()


@pytest.mark.parametrize("timeout_ms", [float("nan"), -1, 0, float("-inf")])
def test_get_with_a_timeout_that_is_no_wait_looks_once(timeout_ms: float) -> None:
    # It used to wait forever on NaN; it shares the task handle's wait now.
    handle = started(app.workflow("etl", tasks=list(etl())))
    assert handle.get(timeout_ms=timeout_ms).unwrap_err().error_code == RetrievalCode.WAIT_TIMEOUT
    with pytest.raises(TypeError):
        handle.get(timeout_ms="10")  # type: ignore[arg-type]


def test_without_output_get_returns_every_nodes_result_by_node_id() -> None:
    a = TaskNode(fn=wt.square, kwargs={"n": 3}, node_id="a")
    b = TaskNode(fn=wt.square, kwargs={"n": 4}, node_id="b")
    handle = started(app.workflow("pair", tasks=[a, b]))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == {"a": TaskResult(ok=9), "b": TaskResult(ok=16)}


def test_task_node_factory_and_class_definition() -> None:
    class Etl(WorkflowDefinition[wt.Saved]):
        name = "etl-class"
        fetch = TaskNode(fn=wt.fetch, kwargs={"url": "x"})
        measure = TaskNode(fn=wt.measure, waits_for=[fetch], args_from={"raw": fetch})
        save = wt.save.node(waits_for=[measure], args_from={"size": measure})(key="class")

        class Meta:
            output = "save"

    handle = started(Etl.build(app))
    again = started(Etl.build_with(app, anything=1))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == wt.Saved(key="class", size=len("<html>x</html>"))
    assert again.get(timeout_ms=10_000).unwrap() == wt.Saved(key="class", size=len("<html>x</html>"))
    # Class attribute names are the node ids.
    assert set(node_status(handle)) == {"fetch", "measure", "save"}


# -- fan-out / fan-in and joins ----------------------------------------------------------------


def test_fan_out_then_fan_in_with_the_context_of_every_branch() -> None:
    branches = [TaskNode(fn=wt.square, kwargs={"n": n}, node_id=f"sq{n}") for n in range(1, 6)]
    total = TaskNode(fn=wt.sum_ctx, waits_for=branches, workflow_ctx_from=branches, node_id="total")
    handle = started(app.workflow("fan", tasks=[*branches, total], output=total))
    # Only the branches are sent at start; the fan-in waits for all five.
    assert Task.objects.count() == 5
    assert node_status(handle)["total"] == "PENDING"
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == sum(n * n for n in range(1, 6))
    assert Task.objects.filter(name="wf.sum_ctx").count() == 1


@pytest.mark.parametrize(
    ("join", "min_success", "fails", "expected"),
    [
        ("all", None, [], ("COMPLETED", 1)),
        ("all", None, ["b"], ("SKIPPED", 0)),
        ("any", None, ["a"], ("COMPLETED", 1)),
        ("any", None, ["a", "b", "c"], ("SKIPPED", 0)),
        ("quorum", 2, ["c"], ("COMPLETED", 1)),
        ("quorum", 2, ["b", "c"], ("SKIPPED", 0)),
    ],
)
def test_join_rules(join: str, min_success: int | None, fails: list[str], expected: tuple[str, int]) -> None:
    deps = [
        TaskNode(fn=wt.fail, kwargs={"code": "NOPE"}, node_id=name)
        if name in fails
        else TaskNode(fn=wt.square, kwargs={"n": 2}, node_id=name)
        for name in ("a", "b", "c")
    ]
    fan_in = TaskNode(fn=wt.noop, waits_for=deps, join=join, min_success=min_success, node_id="in")
    policy = SuccessPolicy(cases=[SuccessCase(required=[deps[0]])]) if fails else None
    handle = started(app.workflow(f"join-{join}", tasks=[*deps, fan_in], success_policy=policy))
    drain()
    assert handle.get(timeout_ms=10_000).is_ok() or fails
    status = node_status(handle)["in"]
    assert (status, Task.objects.filter(name="wf.noop").count()) == expected
    if status == "SKIPPED":
        assert handle.result_for("in").unwrap_err().error_code == WorkflowCode.UPSTREAM_SKIPPED


# -- failures ------------------------------------------------------------------------------------


def test_fail_skips_dependents_lets_other_branches_finish_and_fails_the_workflow() -> None:
    bad = TaskNode(fn=wt.fail, kwargs={"code": "BROKEN"}, node_id="bad")
    after_bad = TaskNode(fn=wt.square, kwargs={"n": 1}, waits_for=[bad], node_id="after_bad")
    after_after = TaskNode(fn=wt.noop, waits_for=[after_bad], node_id="after_after")
    tolerant = TaskNode(fn=wt.describe, waits_for=[bad], args_from={"upstream": bad}, allow_failed_deps=True)
    good = TaskNode(fn=wt.square, kwargs={"n": 7}, node_id="good")
    after_good = TaskNode(fn=wt.square, kwargs={"n": 8}, waits_for=[good], node_id="after_good")
    handle = started(
        app.workflow("failing", tasks=[bad, after_bad, after_after, tolerant, good, after_good], output=after_good)
    )
    drain()
    result = handle.get(timeout_ms=10_000)
    assert result.unwrap_err().error_code == WorkflowCode.WORKFLOW_FAILED
    assert "'bad'" in (result.unwrap_err().message or "")
    assert handle.status().unwrap() == WorkflowStatus.FAILED
    assert node_status(handle) == {
        "bad": "FAILED",
        "after_bad": "SKIPPED",
        "after_after": "SKIPPED",
        "wf.describe": "COMPLETED",
        "good": "COMPLETED",
        "after_good": "COMPLETED",
    }
    assert handle.result_for(after_bad).unwrap_err().error_code == WorkflowCode.UPSTREAM_SKIPPED
    # The tolerant node received the failed upstream's TaskResult, and its meta.
    assert handle.result_for(tolerant).unwrap() == "failing/wf.describe ok=None err=BROKEN"
    assert handle.result_for(good).unwrap() == 49
    assert not Task.objects.filter(name="wf.noop").exists()


def test_success_policy_completes_despite_an_optional_failure() -> None:
    core = TaskNode(fn=wt.square, kwargs={"n": 2}, node_id="core")
    extra = TaskNode(fn=wt.fail, kwargs={"code": "MEH"}, node_id="extra")
    policy = SuccessPolicy(cases=[SuccessCase(required=[core])], optional=[extra])
    handle = started(app.workflow("policy", tasks=[core, extra], output=core, success_policy=policy))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == 4
    only = TaskNode(fn=wt.fail, kwargs={"code": "X"}, node_id="only")
    also = TaskNode(fn=wt.square, kwargs={"n": 3}, node_id="also")
    policy = SuccessPolicy(cases=[SuccessCase(required=[only, also])])
    unmet = started(app.workflow("policy-unmet", tasks=[only, also], success_policy=policy))
    drain()
    error = unmet.get(timeout_ms=10_000).unwrap_err()
    assert error.error_code == WorkflowCode.WORKFLOW_SUCCESS_CASE_NOT_MET
    assert unmet.status().unwrap() == WorkflowStatus.FAILED


def test_pause_on_error_holds_new_nodes_until_resume() -> None:
    bad = TaskNode(fn=wt.fail, kwargs={"code": "HOLD"}, node_id="bad")
    slow = TaskNode(fn=wt.recorded, kwargs={"key": "slow", "sleep_ms": 300}, node_id="slow")
    after_slow = TaskNode(fn=wt.square, kwargs={"n": 5}, waits_for=[slow], node_id="after_slow")
    after_bad = TaskNode(fn=wt.noop, waits_for=[bad], node_id="after_bad")
    handle = started(
        app.workflow("pausing", tasks=[bad, slow, after_slow, after_bad], on_error=OnError.PAUSE, output=after_slow)
    )
    drain()
    # The failure paused it; the slow branch finished, but its dependent was held, not sent.
    assert handle.status().unwrap() == WorkflowStatus.PAUSED
    assert handle.get(timeout_ms=10_000).unwrap_err().error_code == WorkflowCode.WORKFLOW_PAUSED
    assert node_status(handle) == {"bad": "FAILED", "slow": "COMPLETED", "after_slow": "READY", "after_bad": "SKIPPED"}
    assert not Task.objects.filter(name="wf.square").exists()
    assert handle.pause().unwrap() is False  # already paused
    assert handle.resume().unwrap() is True
    assert handle.resume().unwrap() is False
    drain()
    assert node_status(handle)["after_slow"] == "COMPLETED"
    assert handle.result_for(after_slow).unwrap() == 25
    # A node failed, so the workflow failed once everything else had run.
    assert handle.get(timeout_ms=10_000).unwrap_err().error_code == WorkflowCode.WORKFLOW_FAILED


def test_pause_and_resume_by_hand() -> None:
    first = TaskNode(fn=wt.square, kwargs={"n": 2}, node_id="first")
    second = TaskNode(fn=wt.square, kwargs={"n": 3}, waits_for=[first], node_id="second")
    handle = started(app.workflow("manual", tasks=[first, second], output=second))
    assert handle.pause().unwrap() is True
    drain()
    assert node_status(handle) == {"first": "COMPLETED", "second": "READY"}
    assert handle.resume().unwrap() is True
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == 9


def test_cancel_skips_what_has_not_ended_and_cancels_sent_tasks() -> None:
    first = TaskNode(fn=wt.square, kwargs={"n": 2}, node_id="first")
    second = TaskNode(fn=wt.square, kwargs={"n": 3}, waits_for=[first], node_id="second")
    handle = started(app.workflow("cancelled", tasks=[first, second], output=second))
    assert handle.cancel().unwrap() is True
    assert handle.cancel().unwrap() is False
    assert handle.resume().unwrap() is False
    drain()
    assert handle.get(timeout_ms=10_000).unwrap_err().error_code == WorkflowCode.WORKFLOW_CANCELLED
    assert node_status(handle) == {"first": "SKIPPED", "second": "SKIPPED"}
    assert list(Task.objects.values_list("status", flat=True)) == ["CANCELLED"]
    assert Workflow.objects.get(pk=handle.workflow_id).status == WorkflowStatus.CANCELLED


# -- start: refusals write nothing, and start joins the caller's transaction ----------------------


def _bad_specs() -> list[tuple[str, Any]]:
    a = TaskNode(fn=wt.square, kwargs={"n": 1}, node_id="a")
    b = TaskNode(fn=wt.square, kwargs={"n": 1}, node_id="b")
    stranger = TaskNode(fn=wt.square, kwargs={"n": 1}, node_id="stranger")
    cyc1 = TaskNode(fn=wt.square, kwargs={"n": 1}, node_id="c1")
    cyc2 = TaskNode(fn=wt.square, kwargs={"n": 1}, waits_for=[cyc1], node_id="c2")
    cyc1.waits_for = [cyc2]
    fetch = TaskNode(fn=wt.fetch, kwargs={"url": "u"})
    square = TaskNode(fn=wt.square, kwargs={"n": 2})

    class Loud:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    return [
        ("cycle", app.workflow("w", tasks=[cyc1, cyc2])),
        ("unknown dependency", app.workflow("w", tasks=[a, TaskNode(fn=wt.noop, waits_for=[stranger])])),
        (
            "args_from not in waits_for",
            app.workflow("w", tasks=[fetch, TaskNode(fn=wt.measure, args_from={"raw": fetch})]),
        ),
        (
            "type mismatch",
            app.workflow("w", tasks=[square, TaskNode(fn=wt.measure, waits_for=[square], args_from={"raw": square})]),
        ),
        (
            "not a TaskResult parameter",
            app.workflow("w", tasks=[square, TaskNode(fn=wt.square, waits_for=[square], args_from={"n": square})]),
        ),
        (
            "quorum without min_success",
            app.workflow("w", tasks=[a, b, TaskNode(fn=wt.noop, waits_for=[a, b], join="quorum")]),
        ),
        (
            "min_success too large",
            app.workflow("w", tasks=[a, b, TaskNode(fn=wt.noop, waits_for=[a, b], join="quorum", min_success=3)]),
        ),
        ("bad join", app.workflow("w", tasks=[a, TaskNode(fn=wt.noop, waits_for=[a], join="most")])),
        ("missing argument", app.workflow("w", tasks=[TaskNode(fn=wt.square)])),
        ("wrong argument type", app.workflow("w", tasks=[TaskNode(fn=wt.square, kwargs={"n": "many"})])),
        ("unknown argument", app.workflow("w", tasks=[TaskNode(fn=wt.square, kwargs={"n": 1, "m": 2})])),
        ("NaN argument", app.workflow("w", tasks=[TaskNode(fn=wt.fetch, kwargs={"url": float("nan")})])),
        ("infinite argument", app.workflow("w", tasks=[TaskNode(fn=wt.square, kwargs={"n": float("inf")})])),
        (
            "lone surrogate node id",
            app.workflow("w", tasks=[TaskNode(fn=wt.noop, node_id="\ud800"), TaskNode(fn=wt.noop, node_id="\ud800")]),
        ),
        ("NUL in name", app.workflow("", tasks=[a])),
        ("object whose str raises", app.workflow("w", tasks=[TaskNode(fn=wt.square, kwargs={"n": Loud()})])),
        ("object as a node", app.workflow("w", tasks=[Loud()])),  # type: ignore[list-item]
        ("object as fn", app.workflow("w", tasks=[TaskNode(fn=Loud())])),  # type: ignore[arg-type]
        ("name of wrong type", app.workflow(Loud(), tasks=[a])),  # type: ignore[arg-type]
        ("tasks not a list", app.workflow("w", tasks=Loud())),  # type: ignore[arg-type]
        ("empty", app.workflow("w", tasks=[])),
        ("same node twice", app.workflow("w", tasks=[a, a])),
        ("duplicate node ids", app.workflow("w", tasks=[a, TaskNode(fn=wt.noop, node_id="a")])),
        ("output not in tasks", app.workflow("w", tasks=[a], output=stranger)),
        ("bad on_error", app.workflow("w", tasks=[a], on_error="explode")),
        (
            "ctx without parameter",
            app.workflow("w", tasks=[a, TaskNode(fn=wt.noop, waits_for=[a], workflow_ctx_from=[a])]),
        ),
        ("unknown queue", app.workflow("w", tasks=[TaskNode(fn=wt.noop, queue="nowhere")])),
        ("priority out of range", app.workflow("w", tasks=[TaskNode(fn=wt.noop, priority=0)])),
        (
            "naive good_until",
            app.workflow("w", tasks=[TaskNode(fn=wt.noop, good_until=timezone.now().replace(tzinfo=None))]),
        ),
        (
            "success policy names a stranger",
            app.workflow("w", tasks=[a], success_policy=SuccessPolicy(cases=[SuccessCase(required=[stranger])])),
        ),
    ]


@pytest.mark.parametrize("case", range(len(_bad_specs())))
def test_bad_workflows_are_refused_at_start_with_nothing_written(case: int) -> None:
    what, spec = _bad_specs()[case]
    result = spec.start()
    assert isinstance(result, Err), what
    assert result.unwrap_err().code == WorkflowStartErrorCode.VALIDATION_FAILED, (what, result)
    assert result.unwrap_err().retryable is False
    assert (Workflow.objects.count(), WorkflowNode.objects.count(), Task.objects.count()) == (0, 0, 0), what


def test_refusal_messages_name_the_problem() -> None:
    messages = {what: spec.start().unwrap_err().message for what, spec in _bad_specs()}
    assert "cycle: c1 -> c2 -> c1" in messages["cycle"] or "cycle: c2 -> c1 -> c2" in messages["cycle"]
    assert "not in its waits_for" in messages["args_from not in waits_for"]
    assert "TaskResult[str, TaskError]" in messages["type mismatch"]
    assert "TaskResult[int, TaskError]" in messages["type mismatch"]
    assert "min_success" in messages["quorum without min_success"]


def test_start_joins_the_callers_transaction() -> None:
    a = TaskNode(fn=wt.square, kwargs={"n": 2})
    with pytest.raises(RuntimeError), transaction.atomic():
        assert started(app.workflow("rolled back", tasks=[a])).status().unwrap() == WorkflowStatus.RUNNING
        raise RuntimeError("roll back")
    assert (Workflow.objects.count(), WorkflowNode.objects.count(), Task.objects.count()) == (0, 0, 0)
    with transaction.atomic():
        handle = started(app.workflow("committed", tasks=[a], output=a))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == 4


def test_start_inside_an_event_loop_asks_for_start_async() -> None:
    from asgiref.sync import async_to_sync

    spec = app.workflow("async", tasks=[TaskNode(fn=wt.square, kwargs={"n": 3})], output=None)

    async def main() -> tuple[Any, Any]:
        return spec.start(), await spec.start_async()

    refused, handle = async_to_sync(main)()
    assert refused.unwrap_err().code == WorkflowStartErrorCode.ASYNC_CONTEXT
    drain()

    async def wait() -> Any:
        return await handle.unwrap().get_async(timeout_ms=10_000), await handle.unwrap().status_async()

    result, status = async_to_sync(wait)()
    assert (result.unwrap(), status.unwrap()) == ({"wf.square": TaskResult(ok=9)}, WorkflowStatus.COMPLETED)


# -- handles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "\x00", "\ud800"])
def test_handle_of_an_unknown_workflow(workflow_id: str) -> None:
    handle = app.get_workflow_handle(workflow_id)
    assert handle.get(timeout_ms=100).unwrap_err().error_code == WorkflowCode.WORKFLOW_NOT_FOUND
    assert handle.result_for("x").unwrap_err().error_code == WorkflowCode.WORKFLOW_NOT_FOUND
    for operation in (handle.status, handle.results, handle.tasks, handle.pause, handle.resume, handle.cancel):
        assert operation().unwrap_err().code == HandleErrorCode.WORKFLOW_NOT_FOUND


def test_rebuilt_handle_decodes_types_and_reports_missing_nodes() -> None:
    fetch, measure, save = etl()
    handle = started(app.workflow("etl", tasks=[fetch, measure, save], output=save))
    drain()
    rebuilt = app.get_workflow_handle(handle.workflow_id)
    assert rebuilt == handle
    assert rebuilt.get(timeout_ms=10_000).unwrap() == wt.Saved(key="k1", size=24)
    assert rebuilt.result_for("nope").unwrap_err().error_code == RetrievalCode.RESULT_NOT_AVAILABLE

    class Loud:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    for odd in (Loud(), None, 3, "\ud800", "\x00", TaskNode(fn=Loud(), node_id=Loud())):  # type: ignore[arg-type]
        assert rebuilt.result_for(odd).unwrap_err().error_code == RetrievalCode.RESULT_NOT_AVAILABLE  # type: ignore[arg-type]
    assert WorkflowHandle(handle.workflow_id).get(timeout_ms=10_000).unwrap() == {"key": "k1", "size": 24}


def test_node_result_survives_its_task_being_pruned() -> None:
    from horsies_django.worker.runner import prune_finished

    a = TaskNode(fn=wt.square, kwargs={"n": 6})
    handle = started(app.workflow("pruned", tasks=[a], output=a))
    drain()
    Task.objects.update(finished_at=timezone.now() - timedelta(days=8))
    from horsies_django.broker import get_broker

    assert prune_finished(get_broker(), now=timezone.now()) == 1  # the task; the workflow is recent
    assert handle.get(timeout_ms=10_000).unwrap() == 36
    Workflow.objects.update(finished_at=timezone.now() - timedelta(days=8))
    assert prune_finished(get_broker(), now=timezone.now()) == 1  # now the workflow, with its nodes
    assert (Workflow.objects.count(), WorkflowNode.objects.count()) == (0, 0)
    assert handle.get(timeout_ms=100).unwrap_err().error_code == WorkflowCode.WORKFLOW_NOT_FOUND


def test_worker_crash_code_in_a_node_fails_the_node_like_any_task() -> None:
    # A node whose task is cancelled by hand fails; its dependents are skipped.
    a = TaskNode(fn=wt.square, kwargs={"n": 1}, node_id="a")
    b = TaskNode(fn=wt.square, kwargs={"n": 2}, waits_for=[a], node_id="b")
    handle = started(app.workflow("hand-cancelled", tasks=[a, b], output=b))
    task_id = handle.tasks().unwrap()[0].task_id
    assert task_id is not None and app.cancel(task_id)
    assert node_status(handle) == {"a": "FAILED", "b": "SKIPPED"}
    assert handle.get(timeout_ms=10_000).unwrap_err().error_code == WorkflowCode.WORKFLOW_FAILED
    assert handle.result_for("a").unwrap_err().error_code == "TASK_CANCELLED"


def test_huge_values_flow_between_nodes() -> None:
    a = TaskNode(fn=wt.square, kwargs={"n": 10**40}, node_id="a")
    b = TaskNode(fn=wt.describe, waits_for=[a], args_from={"upstream": a}, node_id="b")
    handle = started(app.workflow("huge", tasks=[a, b], output=b))
    drain()
    assert handle.get(timeout_ms=10_000).unwrap() == f"huge/b ok={10**80} err=None"


def test_a_fan_in_counts_a_whole_batch_of_finished_dependencies_in_one_statement() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from horsies_django.broker import Finish, get_broker

    branches = [TaskNode(fn=wt.square, kwargs={"n": n}, node_id=f"b{n}") for n in range(60)]
    fan_in = TaskNode(fn=wt.noop, waits_for=branches, node_id="fan_in")
    handle = started(app.workflow("batch", tasks=[*branches, fan_in]))
    broker = get_broker()
    now = timezone.now()
    claimed = broker.claim(worker_id="w", queues=None, limit=100, now=now, lease_until=now + timedelta(minutes=1))
    assert len(claimed) == 60
    finishes = [
        Finish(
            task_id=task.id, claim_token=task.claim_token, attempt=task.attempt, status="COMPLETED",
            result_json='{"ok": 1}', error_code=None, error_message="", error_traceback="", worker_id="w",
            started_at=now, finished_at=now, attempt_outcome="COMPLETED",
        )
        for task in claimed
    ]  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        assert len(broker.finish_many(finishes)) == 60
    node_updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("UPDATE", "WITH"))]
    node_updates = [sql for sql in node_updates if "horsies_workflow_node" in sql]
    # One to record the 60 ended nodes, one to count them for the fan-in, one to mark it sent.
    assert len(node_updates) == 3, node_updates
    assert node_status(handle)["fan_in"] == "ENQUEUED"
    row = WorkflowNode.objects.get(workflow_id=handle.workflow_id, node_id="fan_in")
    assert (row.deps_total, row.deps_ended, row.deps_succeeded) == (60, 60, 60)
    assert Task.objects.filter(name="wf.noop").count() == 1


def test_a_thousand_node_fan_out_and_its_fan_in_complete() -> None:
    branches = [TaskNode(fn=wt.square, kwargs={"n": n}, node_id=f"b{n}") for n in range(1000)]
    fan_in = TaskNode(fn=wt.noop, waits_for=branches, node_id="fan_in")
    handle = started(app.workflow("wide", tasks=[*branches, fan_in], output=fan_in))
    drain()
    assert handle.get(timeout_ms=60_000).is_ok()
    row = Workflow.objects.get(pk=handle.workflow_id)
    assert (row.status, row.nodes_done, row.nodes_total) == ("COMPLETED", 1001, 1001)
    assert Task.objects.filter(status="COMPLETED").count() == 1001
    assert handle.result_for("b999").unwrap() == 999 * 999


def test_an_expired_node_fails_and_skips_its_dependents() -> None:
    import time

    from horsies_django.broker import get_broker

    soon = timezone.now() + timedelta(milliseconds=50)
    a = TaskNode(fn=wt.square, kwargs={"n": 1}, good_until=soon, node_id="a")
    b = TaskNode(fn=wt.square, kwargs={"n": 2}, waits_for=[a], node_id="b")
    handle = started(app.workflow("expiring", tasks=[a, b], output=b))
    time.sleep(0.1)
    expired = {"err": {"error_code": "TASK_EXPIRED", "message": "expired", "data": None, "exception": None}}
    ended = get_broker().expire_pending(now=timezone.now(), result=expired, error_code="TASK_EXPIRED", message="x")
    assert len(ended) == 1
    assert node_status(handle) == {"a": "FAILED", "b": "SKIPPED"}
    assert handle.get(timeout_ms=10_000).unwrap_err().error_code == WorkflowCode.WORKFLOW_FAILED
    assert handle.result_for("a").unwrap_err().error_code == "TASK_EXPIRED"
