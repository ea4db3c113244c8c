"""`django.tasks` on horsies_django: the same scenarios on Django's immediate backend and on ours.

Each scenario enqueues through Django's API, lets the backend run the task (the immediate backend
runs it inside `enqueue()`; ours needs a worker), and compares what a caller can observe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from horsies_django.backends import (
    HorsiesBackend,
    TaskFailed,
    to_django_priority,
    to_horsies_priority,
)
from horsies_django.models import Task as TaskRow
from horsies_django.worker import Worker
from tests.djtaskapp import tasks
from tests.taskapp.tasks import add as horsies_add

from ..conftest import run_worker

try:
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    from django_tasks import TaskResultStatus, task_backends  # type: ignore[no-redef]
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # type: ignore[no-redef]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]
    from django_tasks.signals import task_enqueued, task_finished, task_started  # type: ignore[no-redef]

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = ["immediate", "default"]


def run(backend: str, task: Any, *args: Any, **kwargs: Any) -> Any:
    """Enqueue on `backend`, let it run, and return the result as the caller then sees it."""
    result = task.using(backend=backend).enqueue(*args, **kwargs)
    if backend == "default":
        assert result.status == TaskResultStatus.READY
        Worker(burst=True, pool="threads").run()
        result.refresh()
    return result


def observed(result: Any) -> dict[str, Any]:
    """What a caller can see of a finished result, minus ids and times that differ by nature."""
    return {
        "status": result.status,
        "is_finished": result.is_finished,
        "return_value": result.return_value if result.status == TaskResultStatus.SUCCESSFUL else None,
        "attempts": result.attempts,
        "workers": len(result.worker_ids),
        "errors": [e.exception_class_path for e in result.errors],
        "last_error_line": result.errors[-1].traceback.strip().splitlines()[-1] if result.errors else None,
        "args": result.args,
        "kwargs": result.kwargs,
        "times_in_order": result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at,
        "priority": result.task.priority,
        "queue_name": result.task.queue_name,
        "takes_context": result.task.takes_context,
    }


SCENARIOS: list[tuple[str, Callable[[], Any], tuple[Any, ...], dict[str, Any]]] = [
    ("success", lambda: tasks.add, (2, 3), {}),
    ("keyword arguments", lambda: tasks.add, (), {"a": 4, "b": 5}),
    ("args and kwargs, other queue and priority", lambda: tasks.describe, (1, "two", [3]), {"x": {"y": None}}),
    ("exception", lambda: tasks.explode, ("boom \u00e9",), {}),
    ("context", lambda: tasks.attempt_number, ("first",), {}),
    ("coroutine", lambda: tasks.double_later, (21,), {}),
    ("result not JSON", lambda: tasks.returns_object, (), {}),
]


@pytest.mark.parametrize(("label", "task", "args", "kwargs"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_same_observable_result_as_the_immediate_backend(
    label: str, task: Callable[[], Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    expected = observed(run("immediate", task(), *args, **kwargs))
    ours = run("default", task(), *args, **kwargs)
    assert observed(ours) == expected
    again = task().get_result(ours.id)  # from the database, as another process would read it
    assert observed(again) == expected
    assert again.id == ours.id and again.backend == "default"


def test_the_scenarios_end_as_expected() -> None:
    """Pins the immediate backend's results, so the comparison above cannot pass on two wrong answers."""
    assert run("default", tasks.add, 2, 3).return_value == 5
    failed = run("default", tasks.explode, "boom")
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is ValueError
    assert "ValueError: boom" in failed.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018
    context = run("default", tasks.attempt_number, "x")
    assert context.return_value == {"label": "x", "attempt": 1, "status": "RUNNING"}
    assert run("default", tasks.double_later, 4).return_value == 8
    not_json = run("default", tasks.returns_object)
    assert not_json.errors[0].exception_class is TypeError


@pytest.mark.parametrize("backend", BACKENDS)
def test_signals_arrive_in_order_with_the_result(backend: str) -> None:
    seen: list[tuple[str, Any, str]] = []

    def receiver(name: str) -> Callable[..., None]:
        def receive(sender: type[Any], task_result: Any, **kwargs: Any) -> None:
            seen.append((name, sender, str(task_result.status)))

        return receive

    receivers = {"enqueued": receiver("enqueued"), "started": receiver("started"), "finished": receiver("finished")}
    for name, signal in (("enqueued", task_enqueued), ("started", task_started), ("finished", task_finished)):
        signal.connect(receivers[name], weak=False)
    try:
        run(backend, tasks.add, 1, 1)
        run(backend, tasks.explode, "no")
    finally:
        for name, signal in (("enqueued", task_enqueued), ("started", task_started), ("finished", task_finished)):
            signal.disconnect(receivers[name])
    sender = type(task_backends[backend])
    assert seen == [
        ("enqueued", sender, "READY"),
        ("started", sender, "RUNNING"),
        ("finished", sender, "SUCCESSFUL"),
        ("enqueued", sender, "READY"),
        ("started", sender, "RUNNING"),
        ("finished", sender, "FAILED"),
    ]


def test_a_raising_signal_receiver_breaks_neither_enqueue_nor_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(broken, weak=False)
    try:
        result = run("default", tasks.add, 20, 22)
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(broken)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    logged = [r for r in caplog.records if r.name == "django.dispatch" and "receiver bug" in r.getMessage()]
    assert len(logged) == 3


def test_backend_capabilities() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, HorsiesBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_tasks_are_rows_in_our_table_with_mapped_priority_and_queue() -> None:
    result = tasks.describe.enqueue(1, k="v")
    row = TaskRow.objects.get(pk=result.id)
    assert row.name == "tests.djtaskapp.tasks.describe"
    assert row.queue_name == "standard"
    assert row.priority == to_horsies_priority(10) == 91
    assert row.arguments == {"args": [1], "kwargs": {"k": "v"}}
    assert row.status == "PENDING"
    assert result.enqueued_at == row.enqueued_at


def test_they_show_in_the_admin(admin_client: Any) -> None:
    result = tasks.add.enqueue(1, 2)
    page = admin_client.get("/admin/horsies_django/task/")
    assert page.status_code == 200
    assert "tests.djtaskapp.tasks.add" in page.content.decode()
    detail = admin_client.get(f"/admin/horsies_django/task/{result.id}/change/")
    assert detail.status_code == 200


@pytest.mark.parametrize(
    ("django", "ours"), [(100, 1), (50, 51), (1, 100), (0, 101), (-1, 102), (-100, 201)]
)
def test_priority_maps_both_ways(django: int, ours: int) -> None:
    assert to_horsies_priority(django) == ours
    assert to_django_priority(ours) == django


@pytest.mark.parametrize("ours", [202, 500, 1000])
def test_our_priorities_below_djangos_range_read_as_its_lowest(ours: int) -> None:
    assert to_django_priority(ours) == -100


def test_larger_django_priority_runs_first() -> None:
    low = tasks.low.enqueue("low")
    high = tasks.high.enqueue("high")
    middle = tasks.add.enqueue(0, 0)
    Worker(burst=True, concurrency=1, pool="threads").run()
    order = [str(i) for i in TaskRow.objects.order_by("claimed_at").values_list("id", flat=True)]
    assert order == [high.id, middle.id, low.id]
    for result, priority in ((low, -50), (high, 50), (middle, 0)):
        assert tasks.add.get_backend().get_result(result.id).task.priority == priority


def test_run_after_waits_until_then() -> None:
    later = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    now = tasks.add.using(run_after=timezone.now() - timedelta(hours=1)).enqueue(2, 2)
    Worker(burst=True, pool="threads").run()
    later.refresh()
    now.refresh()
    assert later.status == TaskResultStatus.READY and later.attempts == 0
    assert now.status == TaskResultStatus.SUCCESSFUL and now.return_value == 4
    row = TaskRow.objects.get(pk=later.id)
    assert row.run_at > timezone.now() + timedelta(minutes=59)


def test_aenqueue_and_aget_result() -> None:
    async def scenario() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(3, 4)
        fetched = await tasks.add.aget_result(result.id)
        return result, fetched

    result, fetched = async_to_sync(scenario)()
    assert fetched.id == result.id and fetched.status == TaskResultStatus.READY
    Worker(burst=True, pool="threads").run()
    async_to_sync(result.arefresh)()
    assert result.return_value == 7


def test_a_cancelled_task_reads_as_failed() -> None:
    from horsies_django import app

    result = tasks.add.enqueue(1, 1)
    assert app.cancel(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.is_finished
    assert [e.exception_class for e in result.errors] == [TaskFailed]
    assert "TASK_CANCELLED" in result.errors[0].traceback
    assert result.finished_at is not None


def test_a_process_pool_worker_runs_them_from_its_own_import() -> None:
    """A real `horsies_worker` finds Django tasks the way it finds ours: by importing tasks.py."""
    ok = tasks.add.enqueue(5, 6)
    failed = tasks.explode.enqueue("far away")
    finished = run_worker("--burst", "--pool", "processes", "--concurrency", "2")
    assert finished.returncode == 0, finished.stderr
    ok.refresh()
    failed.refresh()
    assert ok.return_value == 11 and ok.attempts == 1 and ok.worker_ids[0].startswith(ok.worker_ids[0].split(":")[0])
    assert failed.errors[-1].exception_class is ValueError and "far away" in failed.errors[-1].traceback


@pytest.mark.parametrize(
    "result_id",
    ["", "nope", "\ud800", "\x00", "9" * 10_000, str(uuid.uuid4()), None, 12, float("nan"), ["x"]],
    ids=["empty", "word", "surrogate", "nul", "huge", "unknown uuid", "none", "int", "nan", "list"],
)
def test_get_result_of_anything_else_is_does_not_exist(result_id: Any) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(result_id)


def test_get_result_of_a_str_raising_object_is_does_not_exist() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(Hostile())  # type: ignore[arg-type]


def test_get_result_of_an_app_task_is_does_not_exist() -> None:
    handle = horsies_add.send(1).unwrap()
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(handle.task_id)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((object(),), TypeError),
        ((float("nan"),), InvalidTask),
        ((float("inf"),), InvalidTask),
        ((b"\xff",), ValueError),
    ],
    ids=["object", "nan", "inf", "bad bytes"],
)
def test_hostile_arguments_write_nothing(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        tasks.describe.enqueue(*args)
    assert TaskRow.objects.count() == 0


@pytest.mark.parametrize("text", ["\u00e9\u4e2d", "x" * 100_000, "a\\u0000b"])
def test_awkward_strings_round_trip(text: str) -> None:
    result = run("default", tasks.describe, text)
    assert result.return_value == {"args": [text], "kwargs": {}}


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\ud800"])
def test_text_no_database_stores_is_refused_at_enqueue(text: str) -> None:
    # PostgreSQL's jsonb has no NUL and no database stores a lone surrogate; refused on both
    # databases alike (so a project can move), before anything is written.
    with pytest.raises(InvalidTask):
        tasks.describe.enqueue(text)
    assert TaskRow.objects.count() == 0


def test_queues_must_be_ours_and_the_backends() -> None:
    with pytest.raises(InvalidTask):
        tasks.add.using(queue_name="reports")  # in HORSIES["QUEUES"], not in this backend's QUEUES
    with pytest.raises(InvalidTask):
        tasks.add.using(queue_name="nowhere")


@pytest.mark.parametrize("priority", [101, -101, 1.5])
def test_priority_outside_djangos_range_is_refused(priority: Any) -> None:
    with pytest.raises(InvalidTask):
        tasks.add.using(priority=priority)


@pytest.fixture(autouse=True)
def _no_leftover_receivers() -> Iterator[None]:
    before = [len(s.receivers) for s in (task_enqueued, task_started, task_finished)]
    yield
    assert [len(s.receivers) for s in (task_enqueued, task_started, task_finished)] == before
