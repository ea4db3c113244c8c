"""Horsies.task registration and TaskFunction, on fresh registries (never the global `app`). No database."""

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from horsies_django import Err, Horsies, TaskDefinitionError, TaskError, TaskResult, TaskSendErrorCode
from horsies_django.app import SendOptions, TaskFunction


@pytest.fixture(autouse=True)
def any_queue(settings: Any) -> None:
    """Registration here uses made-up queue names; with no QUEUES setting every name is allowed."""
    settings.HORSIES = {k: v for k, v in settings.HORSIES.items() if k != "QUEUES"}


def add(a: int, b: int = 1) -> TaskResult[int, TaskError]:
    """Add two numbers."""
    return TaskResult(ok=a + b)


def subtract(a: int, b: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=a - b)


def refuse(reason: str) -> TaskResult[None, TaskError]:
    return TaskResult(err=TaskError(error_code="REFUSED", message=reason))


def ratio(x: float) -> TaskResult[float, TaskError]:
    return TaskResult(ok=x)


def untyped(a: int):  # type: ignore[no-untyped-def]
    return TaskResult(ok=a)


def test_decorator_registers_under_its_name() -> None:
    registry = Horsies()
    task = registry.task("math.add")(add)
    assert isinstance(task, TaskFunction)
    assert task.name == "math.add"
    assert task.fn is add
    assert task.app is registry
    assert registry.get_task("math.add") is task
    assert registry.get_task("math.subtract") is None
    assert task.__name__ == "add"
    assert task.__doc__ == "Add two numbers."
    assert task.__wrapped__ is add
    assert set(task.signature.argument_adapters) == {"a", "b"}


def test_direct_form_registers_too() -> None:
    registry = Horsies()
    task = registry.task("math.sub", subtract, queue_name="slow")
    assert registry.get_task("math.sub") is task
    assert task.queue_name == "slow"


def test_default_queue_is_default() -> None:
    assert Horsies().task("math.add")(add).queue_name == "default"
    assert Horsies().task("math.add", queue_name="urgent")(add).queue_name == "urgent"


def test_list_tasks_is_sorted_names() -> None:
    registry = Horsies()
    assert registry.list_tasks() == []
    registry.task("z.refuse")(refuse)
    registry.task("a.add")(add)
    registry.task("m.sub")(subtract)
    assert registry.list_tasks() == ["a.add", "m.sub", "z.refuse"]


def test_registries_are_independent() -> None:
    first, second = Horsies(), Horsies()
    first.task("math.add")(add)
    assert second.list_tasks() == []
    second.task("math.add")(subtract)  # no clash across registries
    assert first.get_task("math.add").fn is add  # type: ignore[union-attr]


def test_duplicate_name_from_another_function_is_refused() -> None:
    registry = Horsies()
    original = registry.task("math.op")(add)
    with pytest.raises(TaskDefinitionError) as info:
        registry.task("math.op")(subtract)
    message = str(info.value)
    assert "'math.op'" in message
    assert f"{__name__}.add" in message
    assert f"{__name__}.subtract" in message
    assert __file__ in message
    assert registry.get_task("math.op") is original


def test_duplicate_name_from_a_local_function_is_refused() -> None:
    registry = Horsies()
    registry.task("math.op")(add)

    def add_again(a: int) -> TaskResult[int, TaskError]:
        return TaskResult(ok=a)

    with pytest.raises(TaskDefinitionError, match="add_again"):
        registry.task("math.op")(add_again)


def test_registering_the_same_function_again_is_allowed() -> None:
    registry = Horsies()
    registry.task("math.add")(add)
    again = registry.task("math.add")(add)
    assert registry.get_task("math.add") is again
    assert registry.list_tasks() == ["math.add"]


def test_one_function_may_be_registered_under_two_names() -> None:
    registry = Horsies()
    registry.task("math.add")(add)
    registry.task("math.plus")(add)
    assert registry.list_tasks() == ["math.add", "math.plus"]


def test_decorating_a_task_is_refused() -> None:
    registry = Horsies()
    task = registry.task("math.add")(add)
    with pytest.raises(TaskDefinitionError, match="already a task"):
        registry.task("math.add2")(task)
    with pytest.raises(TaskDefinitionError, match="already a task"):
        Horsies().task("math.add")(task)
    assert registry.list_tasks() == ["math.add"]


@pytest.mark.parametrize("name", ["", None, 7], ids=repr)
def test_name_must_be_a_non_empty_string(name: object) -> None:
    registry = Horsies()
    with pytest.raises(TaskDefinitionError, match="non-empty string"):
        registry.task(name)(add)  # type: ignore[arg-type]
    assert registry.list_tasks() == []


def test_bad_signature_registers_nothing() -> None:
    registry = Horsies()
    with pytest.raises(TaskDefinitionError, match="untyped"):
        registry.task("bad")(untyped)
    assert registry.list_tasks() == []
    assert registry.get_task("bad") is None


def test_calling_the_task_runs_the_function_here() -> None:
    registry = Horsies()
    assert registry.task("math.add")(add)(2, b=5) == TaskResult(ok=7)
    assert registry.task("math.add")(add)(a=2) == TaskResult(ok=3)
    result = registry.task("refuse")(refuse)("closed")
    assert result.unwrap_err() == TaskError(error_code="REFUSED", message="closed")


def test_calling_does_not_validate_or_encode() -> None:
    # A direct call is a plain function call: no codec in between.
    calls: list[object] = []

    def record(value: int) -> TaskResult[int, TaskError]:
        calls.append(value)
        return TaskResult(ok=0)

    Horsies().task("record")(record)("not an int")  # type: ignore[arg-type]
    assert calls == ["not an int"]


def test_with_options_returns_a_copy() -> None:
    registry = Horsies()
    task = registry.task("math.add", queue_name="standard")(add)
    until = datetime(2030, 1, 1, tzinfo=UTC)

    urgent = task.with_options(queue_name="urgent", priority=5, good_until=until)

    assert urgent is not task
    assert urgent.options == SendOptions(queue_name="urgent", priority=5, good_until=until)
    assert task.options == SendOptions()
    assert (urgent.name, urgent.fn, urgent.app, urgent.signature) == (task.name, task.fn, task.app, task.signature)
    assert urgent.queue_name == "standard"  # the task's own queue; the option overrides it at send time
    assert registry.get_task("math.add") is task
    assert registry.list_tasks() == ["math.add"]
    assert urgent(1, 1) == TaskResult(ok=2)


def test_with_options_keeps_earlier_options_and_accepts_zero() -> None:
    task = Horsies().task("math.add")(add)
    chained = task.with_options(priority=0).with_options(queue_name="q")
    assert chained.options == SendOptions(queue_name="q", priority=0, good_until=None)
    first = task.with_options(priority=9)
    first.with_options(priority=3)
    assert first.options.priority == 9


# -- send() refuses bad arguments before it touches the database -------------------------


def test_send_with_wrong_argument_type_is_validation_failed() -> None:
    task = Horsies().task("math.add")(add)
    result = task.send("two")  # type: ignore[arg-type]
    assert isinstance(result, Err)
    assert result.err_value.code is TaskSendErrorCode.VALIDATION_FAILED
    assert "math.add" in result.err_value.message


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_send_with_non_finite_float_is_validation_failed(bad: float) -> None:
    # send() promises Err(TaskSendError) and never raises for a bad argument.
    task = Horsies().task("ratio")(ratio)
    result = task.send(bad)
    assert isinstance(result, Err)
    assert result.err_value.code is TaskSendErrorCode.VALIDATION_FAILED
