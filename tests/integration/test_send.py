"""What send() writes, and what it refuses to write."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction

from horsies_django import Err, Ok, TaskSendErrorCode
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, echo_invoice

pytestmark = pytest.mark.django_db(transaction=True)


def count_from_another_connection() -> int:
    """Count task rows as a worker would see them: on its own connection, outside this transaction."""
    seen: list[int] = []

    def count() -> None:
        from django.db import connections

        try:
            seen.append(Task.objects.count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return seen[0]


def test_send_stores_arguments_by_name_with_queue_and_priority() -> None:
    handle = add.send(2, b=3).unwrap()
    row = Task.objects.get(pk=handle.task_id)
    assert (row.name, row.queue_name, row.status, row.priority) == ("tests.add", "default", "PENDING", 100)
    assert row.arguments == {"a": 2, "b": 3}
    assert add.send(a=2, b=3).unwrap() != handle
    assert [row.arguments for row in Task.objects.all()] == [{"a": 2, "b": 3}] * 2


def test_queue_priority_comes_from_settings_and_with_options_overrides_it() -> None:
    from shop.models import Order, OrderItem
    from shop.tasks import validate_order

    order = Order(order_id="1", customer_email="a@b.c", items=[OrderItem(sku="x", quantity=1)], shipping_address="s")
    standard = validate_order.send(order).unwrap()
    urgent = validate_order.with_options(priority=3, queue_name="critical").send(order).unwrap()
    assert Task.objects.get(pk=standard.task_id).priority == 50
    row = Task.objects.get(pk=urgent.task_id)
    assert (row.priority, row.queue_name) == (3, "critical")


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: add.send("not a number"), "argument 'a'"),
        (lambda: add.send(), "missing a required argument: 'a'"),
        (lambda: add.send(1, 2, 3), "too many positional arguments"),
        (lambda: add.send(1, c=2), "unexpected keyword argument 'c'"),
        (lambda: echo_invoice.send({"number": "nope"}, 1), "argument 'invoice'"),
        (lambda: add.schedule(-1, 1), "delay_seconds"),
        (lambda: add.schedule("soon", 1), "delay_seconds"),
        (lambda: add.with_options(priority=0).send(1), "priority"),
        (lambda: add.with_options(good_until=datetime(2030, 1, 1)).send(1), "timezone-aware"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(call: Any, fragment: str) -> None:
    result = call()
    assert isinstance(result, Err)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert not result.err_value.retryable
    assert fragment in result.err_value.message
    assert Task.objects.count() == 0


def test_payload_over_the_limit_is_refused(settings: Any) -> None:
    settings.HORSIES = {"MAX_PAYLOAD_BYTES": 100}
    result = echo_invoice.send(
        {
            "number": "6f1c7e54-8f56-4a5b-8d0e-2f3c1d0e9a11",
            "issued": "2026-01-01",
            "due": "2026-02-01T00:00:00Z",
            "total": "9.50",
            "lines": ["x" * 200],
        },
        1,
    )
    assert result.err_value.code == TaskSendErrorCode.PAYLOAD_TOO_LARGE
    assert Task.objects.count() == 0


def test_missing_table_says_run_migrate_and_is_not_retryable() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE horsies_task RENAME TO horsies_task_away")
    try:
        result = add.send(1)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE horsies_task_away RENAME TO horsies_task")
    assert isinstance(result, Err)
    assert result.err_value.code == TaskSendErrorCode.ENQUEUE_FAILED
    assert "run `manage.py migrate`" in result.err_value.message
    assert not result.err_value.retryable
    assert result.err_value.task_id is not None
    assert Task.objects.count() == 0


def test_locked_table_is_enqueue_failed_and_retryable() -> None:
    """A database that cannot take the row now (here: another connection holds the write lock
    past this one's wait) is a retryable ENQUEUE_FAILED, not an exception."""
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold_lock() -> None:
        from django.db import connections

        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("LOCK TABLE horsies_task IN EXCLUSIVE MODE")
                else:
                    cursor.execute(
                        "INSERT INTO horsies_worker (id, hostname, pid, queues, concurrency, pool, "
                        "started_at, last_heartbeat_at) VALUES ('lock', 'h', 1, '[]', 1, 't', "
                        "'2026-01-01', '2026-01-01')"
                    )
                locked.set()
                release.wait(30)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    assert locked.wait(30)
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET lock_timeout = '50ms'")
            else:
                cursor.execute("PRAGMA busy_timeout = 50")
        result = add.send(1)
    finally:
        release.set()
        thread.join()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("RESET lock_timeout")
            else:
                cursor.execute("PRAGMA busy_timeout = 20000")
    assert isinstance(result, Err)
    assert result.err_value.code == TaskSendErrorCode.ENQUEUE_FAILED
    assert result.err_value.retryable
    assert "database error" in result.err_value.message
    assert Task.objects.count() == 0


def test_sync_send_inside_an_event_loop_is_async_context() -> None:
    async def inside_loop() -> Any:
        return add.send(1), add.schedule(1, 1)

    sent, scheduled = asyncio.run(inside_loop())
    assert sent.err_value.code == TaskSendErrorCode.ASYNC_CONTEXT
    assert scheduled.err_value.code == TaskSendErrorCode.ASYNC_CONTEXT
    assert "send_async" in sent.err_value.message
    assert Task.objects.count() == 0


def test_schedule_async_sets_run_at_in_the_future() -> None:
    async def inside_loop() -> Any:
        return await add.schedule_async(30, 1)

    handle = async_to_sync(inside_loop)().unwrap()
    row = Task.objects.get(pk=handle.task_id)
    assert timedelta(seconds=29) < row.run_at - row.enqueued_at <= timedelta(seconds=31)


def test_rolled_back_send_never_runs() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        assert isinstance(add.send(1), Ok)
        raise RuntimeError("roll back")
    assert Task.objects.count() == 0
    assert Worker(burst=True).run().claimed == 0


def test_send_inside_a_transaction_is_visible_only_after_commit() -> None:
    with transaction.atomic():
        handle = add.send(1).unwrap()
        assert count_from_another_connection() == 0
    assert count_from_another_connection() == 1
    Worker(burst=True).run()
    assert handle.get(timeout_ms=1000).unwrap() == 1


def test_good_until_in_the_past_expires_without_running() -> None:
    handle = add.with_options(good_until=datetime.now(UTC) + timedelta(milliseconds=1)).send(1).unwrap()
    import time

    time.sleep(0.01)
    stats = Worker(burst=True).run()
    assert stats.claimed == 0
    result = handle.get(timeout_ms=1000)
    assert result.err.error_code == "TASK_EXPIRED"
    assert Task.objects.get(pk=handle.task_id).status == "EXPIRED"


@pytest.mark.parametrize("delay", [1e20, float("inf"), float("nan")])
def test_absurd_delays_are_refused(delay: float) -> None:
    result = add.schedule(delay, 1)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert Task.objects.count() == 0


def test_a_bad_setting_makes_send_an_error_not_an_exception(settings: Any) -> None:
    settings.HORSIES = {"WORKER": {"lease_s": 1, "heartbeat_s": 1}}
    result = add.send(1)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert "lease_s" in result.err_value.message
    assert Task.objects.count() == 0
