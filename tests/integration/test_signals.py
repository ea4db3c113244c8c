"""horsies_django.signals: what each one carries, and that a broken receiver breaks nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from horsies_django import signals
from horsies_django.models import Task
from horsies_django.types.codes import OperationalErrorCode
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom, flaky, user_error

pytestmark = pytest.mark.django_db(transaction=True)

ALL = {
    "task_sent": signals.task_sent,
    "task_started": signals.task_started,
    "task_finished": signals.task_finished,
    "task_retried": signals.task_retried,
    "task_failed": signals.task_failed,
    "worker_started": signals.worker_started,
    "worker_stopped": signals.worker_stopped,
}


@pytest.fixture
def events() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every signal sent during the test, in order: (name, sender, kwargs)."""
    seen: list[tuple[str, Any, dict[str, Any]]] = []
    receivers: dict[str, Callable[..., None]] = {}
    for name, signal in ALL.items():

        def receive(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            seen.append((_name, sender, kwargs))

        receivers[name] = receive
        signal.connect(receive, weak=False)
    yield seen
    for name, signal in ALL.items():
        signal.disconnect(receivers[name])


def names(events: list[tuple[str, Any, dict[str, Any]]], task_id: str | None = None) -> list[str]:
    return [name for name, _, kwargs in events if task_id is None or kwargs.get("task_id") == task_id]


def test_a_send_and_a_successful_run(events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    handle = add.with_options(priority=7).send(2, 3).unwrap()
    worker = Worker(burst=True, pool="threads")
    worker.run()
    assert names(events) == ["task_sent", "worker_started", "task_started", "task_finished", "worker_stopped"]
    sent, started, finished = (e for e in events if e[0].startswith("task_"))
    assert sent[1] is add or sent[1].name == add.name
    assert sent[2]["task_id"] == handle.task_id and sent[2]["task_name"] == "tests.add"
    assert sent[2]["queue_name"] == "default" and sent[2]["priority"] == 7 and sent[2]["run_at"] is not None
    assert started[1] is worker and started[2] == {
        "task_id": handle.task_id,
        "task_name": "tests.add",
        "attempt": 1,
        "worker_id": worker.worker_id,
    }
    body = finished[2]
    assert finished[1] is worker and body["status"] == "COMPLETED" and body["result"].unwrap() == 5
    assert body["task_name"] == "tests.add" and body["queue_name"] == "default" and body["attempt"] == 1
    row = Task.objects.get(pk=handle.task_id)
    assert (body["enqueued_at"], body["finished_at"]) == (row.enqueued_at, row.finished_at)
    assert body["started_at"] <= body["finished_at"]
    assert events[-1][2]["stats"].completed == 1


def test_an_exception_fails_the_task(events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    handle = boom.send("kaput").unwrap()
    Worker(burst=True, pool="threads").run()
    assert names(events, handle.task_id) == ["task_sent", "task_started", "task_failed", "task_finished"]
    failed = next(kwargs for name, _, kwargs in events if name == "task_failed")
    assert failed["error"].error_code == OperationalErrorCode.UNHANDLED_EXCEPTION
    assert "ValueError: kaput" in failed["traceback"] and failed["error"].exception["type"] == "ValueError"
    finished = next(kwargs for name, _, kwargs in events if name == "task_finished")
    assert finished["status"] == "FAILED" and finished["result"].err == failed["error"]


def test_a_returned_error_fails_the_task_with_no_traceback(events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    handle = user_error.send("OUT_OF_STOCK").unwrap()
    Worker(burst=True, pool="threads").run()
    failed = next(kwargs for name, _, kwargs in events if name == "task_failed")
    assert failed["task_id"] == handle.task_id and failed["traceback"] == ""
    assert failed["error"].error_code == "OUT_OF_STOCK" and failed["error"].data == {"why": "OUT_OF_STOCK"}


def test_a_retry_then_success(thread_worker: Any, events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    handle = flaky.send("signals-retry", 1).unwrap()
    with thread_worker(pool="threads"):
        deadline = time.monotonic() + 60
        while "task_finished" not in names(events) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert names(events, handle.task_id) == [
        "task_sent",
        "task_started",
        "task_retried",
        "task_started",
        "task_finished",
    ]
    retried = next(kwargs for name, _, kwargs in events if name == "task_retried")
    assert retried["error"].error_code == "FLAKY" and retried["attempt"] == 1 and retried["run_at"] is not None
    finished = next(kwargs for name, _, kwargs in events if name == "task_finished")
    assert finished["attempt"] == 2 and finished["result"].unwrap() == 2


def test_send_many_sends_one_signal_per_task_and_a_refused_send_none(
    events: list[tuple[str, Any, dict[str, Any]]],
) -> None:
    handles = add.send_many([(1,), (2,), {"a": 3}]).unwrap()
    assert add.send("not a number").is_err()  # type: ignore[arg-type]
    assert [kwargs["task_id"] for name, _, kwargs in events] == [h.task_id for h in handles]


def test_an_idempotent_send_signals_only_the_first_time(events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    first = add.with_options(idempotency_key="once").send(1).unwrap()
    again = add.with_options(idempotency_key="once").send(1).unwrap()
    assert first == again
    assert names(events) == ["task_sent"]


BROKEN: list[Signal] = list(ALL.values())


def test_raising_receivers_are_logged_and_break_nothing(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        calls.append("x")
        raise ValueError("receiver bug \ud800 \x00")

    def worse(sender: Any, **kwargs: Any) -> None:
        raise SystemError("x" * 100_000)

    for signal in BROKEN:
        signal.connect(broken, weak=False)
        signal.connect(worse, weak=False)
    try:
        handle = add.send(1, 1).unwrap()
        failing = boom.send("x").unwrap()
        stats = Worker(burst=True, pool="threads").run()
    finally:
        for signal in BROKEN:
            signal.disconnect(broken)
            signal.disconnect(worse)
    assert stats.completed == 1 and stats.failed == 1
    assert handle.get(timeout_ms=1000).unwrap() == 2 and failing.get(timeout_ms=1000).is_err()
    # sent x2, worker_started, started x2, finished x2, failed, worker_stopped
    assert len(calls) == 9
    logged = [r for r in caplog.records if r.name == "django.dispatch" and r.exc_info]
    assert len(logged) == 18


def test_no_receivers_means_no_extra_query(django_assert_num_queries: Any) -> None:
    handle = add.send(1).unwrap()
    from horsies_django.broker import Finish

    finish = Finish(
        task_id=handle.task_id,
        claim_token=1,
        attempt=1,
        status="COMPLETED",
        result_json='{"ok": 1}',
        error_code=None,
        error_message="",
        error_traceback="",
        worker_id="w",
        started_at=Task.objects.get(pk=handle.task_id).enqueued_at,
        finished_at=Task.objects.get(pk=handle.task_id).enqueued_at,
        attempt_outcome="COMPLETED",
    )
    worker = Worker(burst=True, pool="threads")
    # Other tests may have connected integrations (Sentry, Prometheus); set them aside here.
    worker_signals = (signals.task_finished, signals.task_failed, signals.task_retried)
    saved = [list(s.receivers) for s in worker_signals]
    try:
        for s in worker_signals:
            s.receivers.clear()
            s.sender_receivers_cache.clear()
        with django_assert_num_queries(0):
            signals.finished(worker, [finish], {handle.task_id})
    finally:
        for s, receivers in zip(worker_signals, saved, strict=True):
            s.receivers[:] = receivers
            s.sender_receivers_cache.clear()


def test_tasks_ended_by_maintenance_are_signalled(events: list[tuple[str, Any, dict[str, Any]]]) -> None:
    """Expiry and lease recovery end tasks that no worker finished: receivers (Sentry, Prometheus)
    hear of them too."""
    from datetime import timedelta

    from django.utils import timezone

    from horsies_django.models import TaskStatus

    expiring = add.with_options(good_until=timezone.now() + timedelta(milliseconds=50)).send(1, 1).unwrap()
    lost = add.send(2, 2).unwrap()
    Task.objects.filter(pk=lost.task_id).update(
        status=TaskStatus.RUNNING, worker_id="gone", attempt=1, claim_token=1, crash_reruns=99,
        started_at=timezone.now() - timedelta(minutes=5), lease_expires_at=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip
    time.sleep(0.1)
    Worker(burst=True, pool="threads").run()

    assert names(events, expiring.task_id) == ["task_sent", "task_finished"]
    finished = next(kw for name, _, kw in events if name == "task_finished" and kw["task_id"] == expiring.task_id)
    assert finished["status"] == "EXPIRED" and finished["task_name"] == "tests.add"
    assert finished["result"].unwrap_err().error_code == "TASK_EXPIRED"

    assert names(events, lost.task_id) == ["task_sent", "task_failed", "task_finished"]
    failed = next(kw for name, _, kw in events if name == "task_failed" and kw["task_id"] == lost.task_id)
    assert failed["error"].error_code == OperationalErrorCode.WORKER_CRASHED
    assert (failed["worker_id"], failed["attempt"], failed["queue_name"]) == ("gone", 1, "default")
    finished = next(kw for name, _, kw in events if name == "task_finished" and kw["task_id"] == lost.task_id)
    assert finished["status"] == "FAILED"
    assert finished["result"].unwrap_err().error_code == OperationalErrorCode.WORKER_CRASHED


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_STORED = [
    pytest.param({"ok": "not an int"}, "tests.add", id="ok-of-the-wrong-type"),
    pytest.param([1, 2], "tests.add", id="not-an-envelope"),
    pytest.param({"err": "not an error"}, "tests.add", id="err-not-an-object"),
    pytest.param({"ok": 1, "err": None}, "tests.add", id="both-sides"),
    pytest.param({"ok": _nested(200)}, "tests.add", id="deep"),
    pytest.param({"ok": "x" * 1_000_000}, "tests.add", id="huge"),
    pytest.param({"ok": "\ufffd \x01 \u2028"}, "no.such.task", id="unknown-task"),
    # NaN: neither database keeps it (jsonb refuses it, SQLite's json_valid() check too), and a lone
    # surrogate or NUL cannot be stored either: no row can hand one to a receiver.
    pytest.param({"ok": float("nan")}, "tests.add", id="nan"),
    pytest.param(None, "tests.add", id="no-result"),
]


@pytest.mark.parametrize(("stored", "name"), HOSTILE_STORED)
def test_a_hostile_row_ended_by_maintenance_is_signalled_and_breaks_nothing(
    stored: Any, name: str, events: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    """Rows are read back to signal them: whatever a row holds, the worker's maintenance goes on and
    each receiver gets a TaskResult (the row's error when its result does not decode)."""
    from django.db import DataError, IntegrityError, transaction
    from django.utils import timezone

    from horsies_django.models import TaskStatus

    hostile = add.send(1, 1).unwrap()
    plain = add.send(2, 2).unwrap()
    now = timezone.now()
    hostile_row = {
        "name": name, "status": TaskStatus.FAILED, "result": stored, "error_code": "X" * 100,
        "error_message": "m" * 100_000, "finished_at": now,
    }  # fmt: skip
    if isinstance(stored, dict) and stored.get("ok") != stored.get("ok"):  # NaN
        with pytest.raises((DataError, IntegrityError)), transaction.atomic():
            Task.objects.filter(pk=hostile.task_id).update(**hostile_row)
        return
    Task.objects.filter(pk=hostile.task_id).update(**hostile_row)
    Task.objects.filter(pk=plain.task_id).update(
        status=TaskStatus.EXPIRED, result={"err": {"error_code": "TASK_EXPIRED", "message": "late"}}, finished_at=now
    )
    worker = Worker(burst=True, pool="threads")
    signals.ended_in_maintenance(worker, [hostile.task_id, plain.task_id, "00000000-0000-0000-0000-000000000000"])

    assert names(events, hostile.task_id)[-2:] == ["task_failed", "task_finished"]
    finished = next(kw for n, _, kw in events if n == "task_finished" and kw["task_id"] == hostile.task_id)
    assert finished["status"] == "FAILED" and finished["task_name"] == name
    assert finished["result"].is_err() or finished["result"].is_ok()  # a TaskResult either way
    if finished["result"].is_err():
        assert finished["result"].unwrap_err().error_code == "X" * 100
    expired = next(kw for n, _, kw in events if n == "task_finished" and kw["task_id"] == plain.task_id)
    assert expired["status"] == "EXPIRED"
    assert expired["result"].unwrap_err().error_code == "TASK_EXPIRED"
