"""Queues from settings: priority across queues, cluster-wide caps, pause; idempotent sends; rate limits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from horsies_django import Horsies, TaskDefinitionError, TaskError, TaskResult, TaskSendErrorCode
from horsies_django.broker import BrokerError, get_broker
from horsies_django.conf import get_settings
from horsies_django.models import RateLimitStart, Task, TaskAttempt
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, bulk_sleep, limited, limited_retrying, sleep

from ..conftest import ROOT, ThreadWorker, start_worker, wait_until_registered, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def with_queues(settings: Any, **queues: dict[str, Any]) -> None:
    settings.HORSIES = {**settings.HORSIES, "QUEUES": {**settings.HORSIES["QUEUES"], **queues}}


def test_queue_priority_orders_work_across_queues() -> None:
    bulk = bulk_sleep.send(0).unwrap()
    standard = sleep.with_options(queue_name="standard").send(0).unwrap()
    critical = sleep.with_options(queue_name="critical").send(0).unwrap()
    Worker(burst=True, concurrency=1).run()
    order = [str(i) for i in Task.objects.order_by("claimed_at").values_list("id", flat=True)]
    assert order == [critical.task_id, standard.task_id, bulk.task_id]
    assert list(Task.objects.order_by("priority").values_list("priority", flat=True)) == [1, 50, 100]


def test_a_send_can_override_priority_within_its_queue() -> None:
    handle = sleep.with_options(queue_name="critical", priority=7).send(0).unwrap()
    assert Task.objects.get(pk=handle.task_id).priority == 7


def test_unknown_queue_is_refused_at_send() -> None:
    # Defining the task does not raise (a traceback at startup); `manage.py check` reports it (E011).
    @Horsies().task("tests.misplaced", queue_name="nope")
    def misplaced() -> TaskResult[int, TaskError]:
        return TaskResult(ok=1)

    result = add.with_options(queue_name="nope").send(1)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert "known queues: bulk, critical, default, reports, standard" in result.err_value.message
    assert Task.objects.count() == 0


def test_without_queues_setting_any_queue_name_works(settings: Any) -> None:
    settings.HORSIES = {k: v for k, v in settings.HORSIES.items() if k != "QUEUES"}
    handle = add.with_options(queue_name="anything-goes").send(1).unwrap()
    assert Task.objects.get(pk=handle.task_id).priority == 100


def test_a_paused_queue_keeps_its_tasks_pending(settings: Any) -> None:
    with_queues(settings, bulk={"priority": 100, "max_concurrency": 0})
    paused = bulk_sleep.send(0).unwrap()
    running = add.send(1).unwrap()
    Worker(burst=True).run()
    assert Task.objects.get(pk=paused.task_id).status == "PENDING"
    assert running.get(timeout_ms=100).unwrap() == 1
    with_queues(settings, bulk={"priority": 100})  # resume
    Worker(burst=True).run()
    assert paused.get(timeout_ms=100).unwrap() == 0


def sample_running(stop: threading.Event, samples: list[int], queue_name: str | None) -> None:
    from django.db import connections

    try:
        while not stop.is_set():
            held = Task.objects.filter(status__in=["CLAIMED", "RUNNING"])
            samples.append((held.filter(queue_name=queue_name) if queue_name else held).count())
            time.sleep(0.01)
    finally:
        connections.close_all()


@pytest.mark.soak
def test_a_queue_cap_of_2_holds_across_4_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HORSIES_TEST_BULK_CAP", "2")
    handles = [bulk_sleep.send(250).unwrap() for _ in range(12)]
    others = [add.send(i).unwrap() for i in range(6)]
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_running, args=(stop, samples, "bulk"))
    sampler.start()
    workers = [start_worker("--concurrency", "3") for _ in range(4)]
    try:
        results = [handle.get(timeout_ms=60_000) for handle in handles + others]
    finally:
        stop.set()
        sampler.join()
        wait_until_registered(workers)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            _, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
    assert [r.unwrap() for r in results] == [250] * 12 + list(range(6))
    assert max(samples) == 2  # reached, never exceeded


def test_an_uncapped_queue_claims_while_a_capped_queue_is_locked(settings: Any) -> None:
    """Claims take the lock of a capped queue only when they claim from it: with another session
    holding the "bulk" queue's lock, a claim of the uncapped "default" queue goes ahead, and one
    that would take a bulk task waits (on PostgreSQL; on SQLite every claim takes turns on the
    database's write lock anyway)."""
    with_queues(settings, bulk={"priority": 100, "max_concurrency": 1})
    capped = bulk_sleep.send(0).unwrap()
    free = add.send(1).unwrap()
    broker = get_broker()
    postgres = broker.vendor == "postgresql"
    limits: dict[str, Any] = {"queue_caps": get_settings().queue_caps(), "cluster_cap": None, "rate_limits": {}}
    now = timezone.now()
    lease = now + timedelta(seconds=30)

    def claim(queues: list[str] | None) -> list[str]:
        claimed = broker.claim_capped(worker_id="w", queues=queues, limit=5, now=now, lease_until=lease, **limits)
        return [task.id for task in claimed]

    if postgres:
        holding, release = threading.Event(), threading.Event()

        def hold_bulk_lock() -> None:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    broker.lock_capped_claims(cursor, ["queue:bulk"])
                    holding.set()
                    release.wait(30)
            finally:
                connections.close_all()

        holder = threading.Thread(target=hold_bulk_lock)
        holder.start()
        try:
            assert holding.wait(30)
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '300ms'")
            assert claim(["default"]) == [free.task_id]  # no wait: "default" has no cap
            for queues in (["bulk"], None):
                with pytest.raises(BrokerError, match="lock timeout"):
                    claim(queues)
        finally:
            release.set()
            holder.join()
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
        assert claim(None) == [capped.task_id]
    else:
        assert sorted(claim(None)) == sorted([free.task_id, capped.task_id])
    # The cap holds: one bulk task is held, so a second one waits.
    bulk_sleep.send(0).unwrap()
    assert claim(None) == []


def test_cluster_max_concurrency_caps_every_queue(settings: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "CLUSTER_MAX_CONCURRENCY": 1}
    handles = [sleep.send(100).unwrap() for _ in range(4)]
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_running, args=(stop, samples, None))
    sampler.start()
    try:
        with ThreadWorker(concurrency=4):
            assert all(h.get(timeout_ms=20_000).unwrap() == 100 for h in handles)
    finally:
        stop.set()
        sampler.join()
    assert max(samples) == 1


def test_idempotent_send_returns_the_live_task() -> None:
    first = add.with_options(idempotency_key="order-42").send(1).unwrap()
    again = add.with_options(idempotency_key="order-42").send(1).unwrap()
    other_key = add.with_options(idempotency_key="order-43").send(1).unwrap()
    assert again.task_id == first.task_id != other_key.task_id
    assert Task.objects.count() == 2
    Worker(burst=True).run()
    after_end = add.with_options(idempotency_key="order-42").send(1).unwrap()
    assert after_end.task_id == first.task_id  # ended, but within the window (a day by default)
    assert Task.objects.count() == 2


def test_idempotency_key_is_free_again_after_the_window(settings: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "IDEMPOTENCY_WINDOW_S": 60}
    first = add.with_options(idempotency_key="k").send(1).unwrap()
    Worker(burst=True).run()
    Task.objects.filter(pk=first.task_id).update(
        finished_at=Task.objects.get(pk=first.task_id).finished_at - timedelta(minutes=2)
    )
    second = add.with_options(idempotency_key="k").send(2).unwrap()
    assert second.task_id != first.task_id
    assert Task.objects.get(pk=first.task_id).idempotency_key is None
    assert Task.objects.get(pk=second.task_id).idempotency_key == "k"


def test_idempotency_key_cannot_be_shared_by_send_many() -> None:
    result = add.with_options(idempotency_key="k").send_many([(1,), (2,)])
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert Task.objects.count() == 0


SENDER = """
import os, sys
sys.path[:0] = [{root!r}, {root!r} + "/testproject"]
import django
django.setup()
from tests.taskapp.tasks import add
barrier = float(os.environ["START_AT"])
import time
while time.time() < barrier:
    time.sleep(0.001)
print(add.with_options(idempotency_key="race").send(1).unwrap().task_id)
"""


def test_concurrent_idempotent_sends_from_several_processes_create_one_task() -> None:
    env = {**worker_env(), "START_AT": str(time.time() + 3)}
    code = SENDER.format(root=str(ROOT))
    senders = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    ids = set()
    for sender in senders:
        out, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        ids.add(out.strip())
    assert len(ids) == 1
    assert Task.objects.filter(idempotency_key="race").count() == 1


def test_rate_limit_holds_over_its_window() -> None:
    handles = limited.send_many([(i,) for i in range(8)]).unwrap()
    with ThreadWorker(concurrency=4):
        assert sorted(h.get(timeout_ms=30_000).unwrap() for h in handles) == list(range(8))
    starts = sorted(TaskAttempt.objects.values_list("started_at", flat=True))
    assert len(starts) == 8
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s < start + timedelta(seconds=2)]
        assert len(in_window) <= 3, (i, starts)
    assert starts[-1] - starts[0] >= timedelta(seconds=4)  # 8 starts at 3 per 2 s need three windows


def test_a_rate_limit_counts_retries_as_starts() -> None:
    """One task that fails and is retried at once: its second try uses up the 2-per-minute limit,
    so the third waits, though the task's latest start is a single row."""
    handle = limited_retrying.send(1).unwrap()
    with ThreadWorker(concurrency=2):
        deadline = time.monotonic() + 30
        while TaskAttempt.objects.filter(task_id=handle.task_id).count() < 2:
            assert time.monotonic() < deadline, "the task was not tried twice"
            time.sleep(0.05)
        time.sleep(1)  # retries are due 10 ms after each failure; a third try would start now
    task = Task.objects.get(pk=handle.task_id)
    assert (task.status, task.attempt) == ("PENDING", 2)
    assert TaskAttempt.objects.filter(task_id=handle.task_id).count() == 2
    assert RateLimitStart.objects.filter(task_name="tests.limited_retrying").count() == 2


def test_bad_rate_limit_is_a_definition_error() -> None:
    with pytest.raises(TaskDefinitionError, match="rate_limit must look like"):

        @Horsies().task("tests.bad_rate", rate_limit="lots")
        def bad_rate() -> TaskResult[int, TaskError]:
            return TaskResult(ok=1)


def test_env_is_untouched() -> None:
    assert "HORSIES_TEST_BULK_CAP" not in os.environ


def test_tasks_on_queues_missing_from_settings_are_a_system_check_error(settings: Any) -> None:
    from django.core.checks import Tags, run_checks

    settings.HORSIES = {**settings.HORSIES, "QUEUES": {"standard": {"priority": 50}}}
    errors = [e for e in run_checks(tags=[Tags.compatibility]) if e.id == "horsies_django.E011"]
    assert any(
        re.match(
            r"task 'tests\.add' at .*tests/taskapp/tasks\.py:\d+: queue 'default' is not in HORSIES\['QUEUES'\]", e.msg
        )
        for e in errors
    )
    assert not any("validate_order" in e.msg for e in errors)  # it uses 'standard'


def test_a_sqlite_project_does_not_need_psycopg() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # any import of psycopg now fails
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'testproject')!r}]\n"
        "import django; django.setup()\n"
        "from horsies_django.broker import get_broker\n"
        "print(type(get_broker()).__name__)\n"
    )
    env = {**worker_env(), "DATABASE_URL": "sqlite:///:memory:"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SqliteBroker"
