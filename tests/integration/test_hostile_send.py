"""Hostile input at every producer entry point: send/schedule/send_many (and their async twins),
with_options, get/get_async, get_handle, cancel and info. Each answers with `Err` or a
`TaskResult(err=...)`, or raises `TypeError` at once for an argument of the wrong type (as
docs/api.md says per function); nothing else escapes, and a refused send writes nothing.

What the codec accepts is stored, claimed and decoded by a real worker, equal to what was sent."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from pydantic import BaseModel

from horsies_django import Err, Ok, RetrievalCode, TaskError, TaskResult, TaskSendErrorCode, app
from horsies_django.models import Task
from horsies_django.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


class Evil:
    """An object whose every way of being shown raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")


class EvilKey(Evil):
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


class Bag(BaseModel):
    data: dict  # type: ignore[type-arg]
    anything: Any = None
    ratio: float = 1.0


@dataclass
class Pair:
    left: Any
    right: float


@app.task("tests.hostile.take_any")
def take_any(value: Any) -> TaskResult[Any, TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_str")
def take_str(value: str) -> TaskResult[str, TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_float")
def take_float(value: float) -> TaskResult[float, TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_dict")
def take_dict(value: dict) -> TaskResult[dict, TaskError]:  # type: ignore[type-arg]
    return TaskResult(ok=value)


@app.task("tests.hostile.take_list")
def take_list(value: list[float]) -> TaskResult[list[float], TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_bag")
def take_bag(value: Bag) -> TaskResult[Bag, TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_pair")
def take_pair(value: Pair) -> TaskResult[Pair, TaskError]:
    return TaskResult(ok=value)


@app.task("tests.hostile.take_int")
def take_int(value: int, other: int = 0) -> TaskResult[int, TaskError]:
    return TaskResult(ok=value + other)


NAN, INF = math.nan, math.inf


def mutated_bag() -> Bag:
    bag = Bag(data={})
    bag.ratio = "not a number"  # type: ignore[assignment]  # pydantic does not validate assignment
    return bag


def self_containing() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# (task, arguments, code, a fragment of the message)
REFUSED: list[tuple[Any, tuple[Any, ...], TaskSendErrorCode, str]] = [
    (take_str, ("\ud800",), TaskSendErrorCode.VALIDATION_FAILED, "surrogate"),
    (take_any, ({"k": "a\ud800b"},), TaskSendErrorCode.VALIDATION_FAILED, "surrogate"),
    (take_any, ({"k\udfff": 1},), TaskSendErrorCode.VALIDATION_FAILED, "surrogate"),
    (take_str, ("a\x00b",), TaskSendErrorCode.VALIDATION_FAILED, "NUL"),
    (take_any, ({"a\x00": 1},), TaskSendErrorCode.VALIDATION_FAILED, "NUL"),
    (take_float, (NAN,), TaskSendErrorCode.VALIDATION_FAILED, "NaN"),
    (take_float, (INF,), TaskSendErrorCode.VALIDATION_FAILED, "NaN or infinite"),
    (take_float, (-INF,), TaskSendErrorCode.VALIDATION_FAILED, "NaN or infinite"),
    (take_any, (NAN,), TaskSendErrorCode.VALIDATION_FAILED, "NaN"),
    (take_any, ([1, [2, INF]],), TaskSendErrorCode.VALIDATION_FAILED, "[1][1]"),
    (take_dict, ({"x": NAN},), TaskSendErrorCode.VALIDATION_FAILED, "['x']"),
    (take_dict, ({"x": {"y": -INF}},), TaskSendErrorCode.VALIDATION_FAILED, "NaN or infinite"),
    (take_list, ([1.0, NAN],), TaskSendErrorCode.VALIDATION_FAILED, "[1]"),
    (take_bag, (Bag(data={"x": NAN}),), TaskSendErrorCode.VALIDATION_FAILED, ".data['x']"),
    (take_bag, (Bag(data={}, anything=[INF]),), TaskSendErrorCode.VALIDATION_FAILED, ".anything[0]"),
    (take_bag, (Bag(data={}, ratio=NAN),), TaskSendErrorCode.VALIDATION_FAILED, ".ratio"),
    (take_pair, (Pair(left={"z": NAN}, right=1.0),), TaskSendErrorCode.VALIDATION_FAILED, ".left['z']"),
    (take_bag, (mutated_bag(),), TaskSendErrorCode.VALIDATION_FAILED, "ratio"),
    (take_int, (10**5000,), TaskSendErrorCode.VALIDATION_FAILED, "digits"),
    (take_any, (10**5000,), TaskSendErrorCode.VALIDATION_FAILED, "digits"),
    (take_any, (Evil(),), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_any, ({EvilKey(): 1},), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_any, (self_containing(),), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_any, (deep(100_000),), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_any, (b"\xff\xfe",), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_any, (object(),), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_int, ("1e400",), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_int, (Evil(),), TaskSendErrorCode.VALIDATION_FAILED, "argument 'value'"),
    (take_str, ("x" * 2_000_000,), TaskSendErrorCode.PAYLOAD_TOO_LARGE, "MAX_PAYLOAD_BYTES"),
]


def entry_points(task: Any) -> list[tuple[str, Callable[..., Any]]]:
    """The same call made through each way of sending."""
    return [
        ("send", lambda *a: task.send(*a)),
        ("schedule", lambda *a: task.schedule(5, *a)),
        ("send_many", lambda *a: task.send_many([a])),
        ("send_async", lambda *a: async_to_sync(task.send_async)(*a)),
        ("schedule_async", lambda *a: async_to_sync(task.schedule_async)(5, *a)),
        ("send_many_async", lambda *a: async_to_sync(task.send_many_async)([a])),
    ]


@pytest.mark.parametrize(("task", "args", "code", "fragment"), REFUSED, ids=lambda v: getattr(v, "name", None))
def test_hostile_arguments_are_refused_at_send_by_every_entry_point(
    task: Any, args: tuple[Any, ...], code: TaskSendErrorCode, fragment: str
) -> None:
    for how, call in entry_points(task):
        result = call(*args)
        assert isinstance(result, Err), (how, result)
        assert result.err_value.code == code, (how, result.err_value)
        assert not result.err_value.retryable
        assert fragment in result.err_value.message, (how, result.err_value.message)
        result.err_value.message.encode()  # the message itself is storable, printable text
    assert Task.objects.count() == 0


# Edge values that are fine: stored, run by a worker and read back equal.
ACCEPTED: list[tuple[Any, Any]] = [
    (take_str, "a\\u0000b"),  # a backslash, then "u0000": not a NUL
    (take_str, "😀 \u2028 \U0010ffff"),
    (take_str, ""),
    (take_float, 1.7976931348623157e308),
    (take_float, -0.0),
    (take_float, 5e-324),
    (take_int, 2**63),
    (take_int, -(10**4000)),
    (take_any, {"nested": [None, True, 1, 1.5, "s", {"null": "NaN"}]}),
    (take_any, "Infinity"),
    (take_dict, {"": {"": []}}),
    (take_list, [0.1, -2.5e-10]),
    (take_bag, Bag(data={"x": 1.5}, anything={"k": [1, "null"]}, ratio=2.0)),
    (take_pair, Pair(left=[1, "two"], right=3.5)),
]


@pytest.mark.parametrize(("task", "value"), ACCEPTED, ids=lambda v: getattr(v, "name", None))
def test_edge_values_round_trip_through_the_database_and_a_worker(task: Any, value: Any) -> None:
    handle = task.send(value).unwrap()
    Worker(burst=True).run()
    assert handle.get(timeout_ms=5000).unwrap() == value


def test_schedule_refuses_absurd_delays() -> None:
    for delay in (NAN, INF, -INF, -1, 1e300, 10**400, "soon", None, True, Evil()):
        result = take_int.schedule(delay, 1)
        assert isinstance(result, Err), delay
        assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
        assert "delay_seconds" in result.err_value.message
    assert Task.objects.count() == 0


def test_send_many_refuses_bad_items_and_raises_type_error_for_a_non_sequence() -> None:
    for calls in (["x"], [(1,), 5], [(NAN,)], [{"value": 1, "nope": 2}], [{EvilKey(): 1}], [{1: 1}]):
        result = take_any.send_many(calls)
        assert isinstance(result, Err), calls
        assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    for calls in (None, 5, Evil()):
        with pytest.raises(TypeError):
            take_any.send_many(calls)  # type: ignore[arg-type]
    assert Task.objects.count() == 0


# with_options: (option, value, how it fails) where "send" means each send returns Err.
OPTIONS: list[tuple[str, Any, str]] = [
    ("queue_name", "", "send"),
    ("queue_name", "q" * 101, "send"),
    ("queue_name", "a\x00", "send"),
    ("queue_name", "\ud800", "send"),
    ("queue_name", 5, "type"),
    ("queue_name", Evil(), "type"),
    ("priority", 0, "send"),
    ("priority", 10**100, "send"),
    ("priority", -1, "send"),
    ("priority", "3", "type"),
    ("priority", True, "type"),
    ("priority", 1.5, "type"),
    ("good_until", datetime(2030, 1, 1), "send"),
    ("good_until", "2030-01-01T00:00:00", "send"),
    ("good_until", "soon", "send"),
    ("good_until", "\ud800\x00", "send"),
    ("good_until", 1893456000, "type"),
    ("good_until", Evil(), "type"),
    ("idempotency_key", "", "send"),
    ("idempotency_key", "k" * 256, "send"),
    ("idempotency_key", "k\x00", "send"),
    ("idempotency_key", "\udc00", "send"),
    ("idempotency_key", 7, "type"),
]


@pytest.mark.parametrize(("option", "value", "fails"), OPTIONS)
def test_with_options_refuses_bad_values_at_send_and_bad_types_at_once(option: str, value: Any, fails: str) -> None:
    if fails == "type":
        with pytest.raises(TypeError, match=option):
            take_int.with_options(**{option: value})
        return
    bound = take_int.with_options(**{option: value})
    for result in (bound.send(1), bound.schedule(1, 1), bound.send_many([(1,)])):
        assert isinstance(result, Err)
        assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
        assert option in result.err_value.message
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    "good_until",
    ["2030-01-01T00:00:00Z", "2030-01-01T01:00:00+01:00", datetime(2030, 1, 1, tzinfo=UTC)],
)
def test_good_until_takes_aware_datetimes_and_iso_strings(good_until: Any) -> None:
    handle = take_int.with_options(good_until=good_until).send(1).unwrap()
    assert Task.objects.get(pk=handle.task_id).good_until == datetime(2030, 1, 1, tzinfo=UTC)


def test_an_empty_queue_name_is_refused_not_replaced_by_the_default() -> None:
    result = take_int.with_options(queue_name="").send(1)
    assert result.err_value.code == TaskSendErrorCode.VALIDATION_FAILED
    assert "queue_name must not be empty" in result.err_value.message


# -- reading results ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout_ms", [NAN, -1, -INF, 0, 0.0001])
def test_get_with_a_meaningless_or_tiny_timeout_looks_once(timeout_ms: float) -> None:
    handle = take_int.send(1).unwrap()  # no worker: it stays pending
    assert handle.get(timeout_ms=timeout_ms).err.error_code == RetrievalCode.WAIT_TIMEOUT
    result = async_to_sync(handle.get_async)(timeout_ms=timeout_ms)
    assert result.err.error_code == RetrievalCode.WAIT_TIMEOUT


@pytest.mark.parametrize("timeout_ms", [INF, 10**400, 1e300, None])
def test_get_with_a_huge_timeout_waits_without_limit(timeout_ms: Any) -> None:
    handle = take_int.send(41, 1).unwrap()
    Worker(burst=True).run()
    assert handle.get(timeout_ms=timeout_ms).unwrap() == 42
    assert async_to_sync(handle.get_async)(timeout_ms=timeout_ms).unwrap() == 42


@pytest.mark.parametrize("timeout_ms", ["10", True, Evil(), [1]])
def test_get_raises_type_error_at_once_for_a_timeout_that_is_not_a_number(timeout_ms: Any) -> None:
    handle = take_int.send(1).unwrap()
    with pytest.raises(TypeError, match="timeout_ms"):
        handle.get(timeout_ms=timeout_ms)
    with pytest.raises(TypeError, match="timeout_ms"):
        async_to_sync(handle.get_async)(timeout_ms=timeout_ms)


@pytest.mark.parametrize(
    "task_id", ["", "\ud800", "\x00", "not-a-uuid", "x" * 100_000, "00000000-0000-0000-0000-000000000000"]
)
def test_lookups_by_a_hostile_id_answer_without_raising(task_id: str) -> None:
    handle = app.get_handle(task_id)
    assert handle.get(timeout_ms=0).err.error_code == RetrievalCode.TASK_NOT_FOUND
    assert async_to_sync(handle.get_async)(timeout_ms=0).err.error_code == RetrievalCode.TASK_NOT_FOUND
    assert handle.info() == Ok(None)
    assert handle.cancel() is False
    assert app.cancel(task_id) is False


@pytest.mark.parametrize("task_id", [None, 5, Evil(), b"bytes"])
def test_get_handle_and_cancel_raise_type_error_for_a_non_string_id(task_id: Any) -> None:
    with pytest.raises(TypeError, match="task_id"):
        app.get_handle(task_id)
    with pytest.raises(TypeError, match="task_id"):
        app.cancel(task_id)


def test_sends_inside_an_event_loop_answer_async_context_for_hostile_input_too() -> None:
    async def inside_loop() -> list[Any]:
        return [take_any.send(Evil()), take_any.schedule(5, {"x": NAN}), take_any.send_many([("\ud800",)])]

    for result in asyncio.run(inside_loop()):
        assert result.err_value.code == TaskSendErrorCode.ASYNC_CONTEXT


def test_a_refused_value_never_reaches_the_worker() -> None:
    """A refused send leaves nothing behind; an innocent send beside it runs once."""
    refused = [take_bag.send(mutated_bag()), take_any.send({"x": NAN}), take_str.send("\x00")]
    assert all(isinstance(result, Err) for result in refused)
    handle = take_int.send(2, other=3).unwrap()
    stats = Worker(burst=True).run()
    assert stats.claimed == 1
    assert handle.get(timeout_ms=5000).unwrap() == 5
    assert Task.objects.count() == 1


def test_delay_keeps_run_at_in_the_future() -> None:
    handle = take_int.schedule(60, 1).unwrap()
    row = Task.objects.get(pk=handle.task_id)
    assert timedelta(seconds=59) < row.run_at - row.enqueued_at <= timedelta(seconds=61)
