"""What makes the queue fast must not change what it does: bulk send, the claim's index, NOTIFY."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.utils import timezone

from horsies_django import Err, Ok, TaskSendErrorCode, app
from horsies_django.broker import get_broker
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.taskapp.tasks import add

from ..conftest import ThreadWorker

pytestmark = pytest.mark.django_db(transaction=True)

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY and EXPLAIN plans are PostgreSQL's"
)


def test_send_many_writes_every_call_and_returns_a_handle_each() -> None:
    result = add.send_many([(1, 2), {"a": 3, "b": 4}, (5,)])
    assert isinstance(result, Ok)
    handles = result.unwrap()
    assert len(handles) == 3 and len({h.task_id for h in handles}) == 3
    assert Task.objects.count() == 3
    Worker(burst=True).run()
    assert [h.get(timeout_ms=100).unwrap() for h in handles] == [3, 7, 5]


def test_send_many_of_ten_thousand_is_one_batch_of_rows() -> None:
    handles = add.send_many([(i, i) for i in range(10_000)]).unwrap()
    assert len(handles) == 10_000
    assert Task.objects.filter(status="PENDING", name="tests.add").count() == 10_000


@pytest.mark.parametrize(
    ("calls", "fragment"),
    [
        ([(1,), (2,), ("three",)], "call 2: task 'tests.add': argument 'a'"),
        ([(1,), {"a": 1, "c": 2}], "call 1:"),
        ([(1,), [2]], "call 1 must be a tuple of arguments or a dict"),
    ],
)
def test_send_many_is_all_or_nothing(calls: list[Any], fragment: str) -> None:
    result = add.send_many(calls)
    assert isinstance(result, Err)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert fragment in result.err_value.message
    assert Task.objects.count() == 0


def test_send_many_empty_and_async() -> None:
    assert add.send_many([]).unwrap() == []

    async def inside_loop() -> Any:
        return add.send_many([(1,)]), await add.send_many_async([(1,), (2,)])

    refused, sent = async_to_sync(inside_loop)()
    assert refused.err_value.code == TaskSendErrorCode.ASYNC_CONTEXT
    assert len(sent.unwrap()) == 2
    assert Task.objects.count() == 2


@postgres_only
def test_claim_query_uses_the_partial_ready_index() -> None:
    add.send_many([(i,) for i in range(20)]).unwrap()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO horsies_task (id, name, queue_name, priority, status, arguments, error_message, "
            "error_traceback, attempt, max_retries, crash_reruns, run_at, enqueued_at, claim_token) "
            "SELECT gen_random_uuid(), 'tests.add', 'default', 100, 'COMPLETED', '{}', '', '', 1, 0, 0, now(), "
            "now(), 1 FROM generate_series(1, 20000)"
        )
        cursor.execute("ANALYZE horsies_task")
        now = timezone.now()
        sql, params = get_broker().claim_statement(
            worker_id="w", queues=None, limit=10, now=now, lease_until=now + timedelta(seconds=60)
        )
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "horsies_task_ready_idx" in plan, plan


def test_a_capped_claim_reads_the_ready_index_without_sorting() -> None:
    """A capped queue's claim holds its queue's lock (on SQLite, the one write lock) while it reads
    candidates: on a freshly filled table that read must follow the ready index, not sort every
    pending row of the queue."""
    from django.test.utils import CaptureQueriesContext

    add.with_options(queue_name="default").send_many([(i,) for i in range(3000)]).unwrap()
    broker = get_broker()
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        claimed = broker.claim_capped(
            worker_id="w", queues=["default"], limit=2, now=now, lease_until=now + timedelta(seconds=60),
            queue_caps={"default": 5}, cluster_cap=None, rate_limits={},
        )  # fmt: skip
    assert len(claimed) == 2
    sqls = [q["sql"] for q in queries.captured_queries]
    candidates = next(sql for sql in sqls if sql.startswith("SELECT id, queue_name"))
    if connection.vendor == "postgresql":  # the planner setting is made in the claim's own transaction
        assert any("enable_sort = off" in sql for sql in sqls[: sqls.index(candidates)]), sqls
    select = candidates.split(" FOR UPDATE")[0]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + select)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
            assert "horsies_task_ready_idx" in plan and "TEMP B-TREE" not in plan, plan
        else:
            with transaction.atomic():
                broker.plan_claims(cursor)
                cursor.execute("EXPLAIN " + select)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "horsies_task_ready_idx" in plan and "Sort" not in plan, plan


@postgres_only
def test_an_idle_worker_is_woken_by_notify_not_by_its_poll(settings: Any) -> None:
    # Heartbeats also wake the loop; make them as rare as the poll.
    settings.HORSIES = {**settings.HORSIES, "WORKER": {"heartbeat_s": 60, "lease_s": 120}}
    with ThreadWorker(poll_interval_s=60):
        time.sleep(0.3)  # let it go idle, listening
        handle = add.send(20, 22).unwrap()
        result = handle.get(timeout_ms=20_000)  # far below the 60 s poll: only NOTIFY can wake it
    assert result.unwrap() == 42


@postgres_only
def test_a_waiting_get_is_woken_by_the_done_notification() -> None:
    handle = add.send(1).unwrap()

    def cancel_soon() -> None:
        from django.db import connections

        time.sleep(0.3)
        try:
            app.cancel(handle.task_id)
        finally:
            connections.close_all()

    broker = get_broker()
    threading.Thread(target=cancel_soon).start()
    started = time.monotonic()
    with broker.result_waiter(handle.task_id) as wait:
        wait(30)  # returns when the cancel's notification names this task
    assert time.monotonic() - started < 20
    assert Task.objects.get(pk=handle.task_id).status == "CANCELLED"


def test_poll_only_mode_sends_and_runs_without_listen(settings: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "POLL_ONLY": True}
    assert get_broker().poll_only
    with ThreadWorker(poll_interval_s=0.05):
        handles = add.send_many([(1,), (2,)]).unwrap()
        assert [h.get(timeout_ms=10_000).unwrap() for h in handles] == [1, 2]
