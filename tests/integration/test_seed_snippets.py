"""The seed page's three snippets, as written there (only the imports differ), against a worker in
this process and against a real `horsies_worker` subprocess."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from shop.models import Order, OrderItem, ValidatedOrder
from shop.tasks import validate_order

from horsies_django import Err, Ok, RetrievalCode, TaskResult
from horsies_django.models import Task

from ..conftest import start_worker

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = Order(
    order_id="ORD-1",
    customer_email="ada@example.com",
    items=[OrderItem(sku="BOOK", quantity=1)],
    shipping_address="1 Way",
)
NO_ID = Order(
    order_id="", customer_email="x@example.com", items=[OrderItem(sku="PEN", quantity=1)], shipping_address="?"
)


def snippet_send(order: Order) -> Any:
    result = None
    match validate_order.send(order):
        case Ok(handle):
            result = handle.get(timeout_ms=5000)  # blocks up to 5 seconds
        case Err(send_err):
            print(f"Send failed: {send_err.code} - {send_err.message}")
    return result


async def snippet_send_async(order: Order) -> Any:
    result = None
    match await validate_order.send_async(order):
        case Ok(handle):
            result = await handle.get_async(timeout_ms=5000)
        case Err(send_err):
            print(f"Send failed: {send_err.code}")
    return result


def snippet_schedule(order: Order) -> Any:
    scheduled = None
    match validate_order.schedule(5, order):
        case Ok(handle):
            print(f"Scheduled: {handle.task_id}")
            scheduled = handle
        case Err(err):
            print(f"Schedule failed: {err.code}")
    return scheduled


def assert_validated(result: Any) -> None:
    assert isinstance(result, TaskResult)
    assert result.is_ok(), result
    assert isinstance(result.ok, ValidatedOrder)
    assert result.ok.order_id == "ORD-1"
    assert result.ok.items == GOOD.items


def test_send_and_get_with_worker_in_process(thread_worker: Any) -> None:
    with thread_worker():
        result = snippet_send(GOOD)
        failed = snippet_send(NO_ID)
    assert_validated(result)
    assert failed.is_err()
    assert failed.err.error_code == "INVALID_ORDER_ID"
    assert failed.err.message == "Order ID is required"


def test_send_async_and_get_async_with_worker_in_process(thread_worker: Any) -> None:
    with thread_worker():
        result = async_to_sync(snippet_send_async)(GOOD)
    assert_validated(result)


def test_schedule_waits_for_its_delay(thread_worker: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sent_at = time.monotonic()
    with thread_worker():
        handle = snippet_schedule(GOOD)
        assert handle is not None
        early = handle.get(timeout_ms=1000)
        assert early.err.error_code == RetrievalCode.WAIT_TIMEOUT
        result = handle.get(timeout_ms=10000)
    assert time.monotonic() - sent_at >= 5
    assert_validated(result)
    assert f"Scheduled: {handle.task_id}" in capsys.readouterr().out


def test_snippets_against_a_worker_subprocess() -> None:
    worker = start_worker("--concurrency", "2")
    try:
        # Let the worker and its child processes start first: the snippets' 5 s waits are about the
        # API, not about how fast a loaded machine starts three Python processes.
        assert_validated(validate_order.send(GOOD).unwrap().get(timeout_ms=120_000))
        result = snippet_send(GOOD)
        async_result = async_to_sync(snippet_send_async)(GOOD)
        handle = snippet_schedule(GOOD)
        scheduled = handle.get(timeout_ms=10000)
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert_validated(result)
    assert_validated(async_result)
    assert_validated(scheduled)
    assert Task.objects.filter(status="COMPLETED").count() == 4
