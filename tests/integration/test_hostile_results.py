"""Hostile results: a task that returns something the database cannot store, or that could not be
read back, ends FAILED with WORKER_SERIALIZATION_ERROR when it finishes (not later, in `get()`),
and the innocent tasks that finish beside it are not touched. Run by a real worker, both databases."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel

from horsies_django import OperationalErrorCode, TaskError, TaskResult, app
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.taskapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)

NAN, INF = math.nan, math.inf


class Reading(BaseModel):
    values: dict  # type: ignore[type-arg]
    extra: Any = None
    level: float = 0.0


class Unshowable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


def mutated_reading() -> Reading:
    reading = Reading(values={})
    reading.level = "high"  # type: ignore[assignment]  # no validation on assignment
    return reading


def self_containing() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


# What each hostile task returns: built when it runs, in the worker.
RETURNS: dict[str, Any] = {
    "any_nan": lambda: TaskResult(ok=NAN),
    "any_nested_inf": lambda: TaskResult(ok={"a": [1, INF]}),
    "dict_nan": lambda: TaskResult(ok={"x": NAN}),
    "model_dict_nan": lambda: TaskResult(ok=Reading(values={"x": -INF})),
    "model_any_nan": lambda: TaskResult(ok=Reading(values={}, extra=[NAN])),
    "model_mutated": lambda: TaskResult(ok=mutated_reading()),
    "str_surrogate": lambda: TaskResult(ok="\ud800"),
    "str_nul": lambda: TaskResult(ok="a\x00b"),
    "key_nul": lambda: TaskResult(ok={"k\x00": 1}),
    "huge_int": lambda: TaskResult(ok=10**5000),
    "unshowable": lambda: TaskResult(ok=Unshowable()),
    "cycle": lambda: TaskResult(ok=self_containing()),
    "error_message_nul": lambda: TaskResult(err=TaskError(error_code="BAD", message="a\x00b")),
    "error_message_surrogate": lambda: TaskResult(err=TaskError(error_code="BAD", message="\udc80")),
    "error_data_nan": lambda: TaskResult(err=TaskError(error_code="BAD", message="m", data={"x": NAN})),
    "error_data_surrogate": lambda: TaskResult(err=TaskError(error_code="BAD", message="m", data=["\ud800"])),
}


@app.task("tests.hostile.result_any")
def result_any(case: str) -> TaskResult[Any, TaskError]:
    return RETURNS[case]()  # type: ignore[no-any-return]


@app.task("tests.hostile.result_dict")
def result_dict(case: str) -> TaskResult[dict, TaskError]:  # type: ignore[type-arg]
    return RETURNS[case]()  # type: ignore[no-any-return]


@app.task("tests.hostile.result_model")
def result_model(case: str) -> TaskResult[Reading, TaskError]:
    return RETURNS[case]()  # type: ignore[no-any-return]


@app.task("tests.hostile.result_str")
def result_str(case: str) -> TaskResult[str, TaskError]:
    return RETURNS[case]()  # type: ignore[no-any-return]


@app.task("tests.hostile.result_int")
def result_int(case: str) -> TaskResult[int, TaskError]:
    return RETURNS[case]()  # type: ignore[no-any-return]


CASES: list[tuple[Any, str, str]] = [
    (result_any, "any_nan", "NaN"),
    (result_any, "any_nested_inf", "['a'][1]"),
    (result_dict, "dict_nan", "['x']"),
    (result_model, "model_dict_nan", ".values['x']"),
    (result_model, "model_any_nan", ".extra[0]"),
    (result_model, "model_mutated", "level"),
    (result_str, "str_surrogate", "surrogate"),
    (result_str, "str_nul", "NUL"),
    (result_any, "key_nul", "NUL"),
    (result_int, "huge_int", "digits"),
    (result_any, "unshowable", "cannot be encoded"),
    (result_any, "cycle", "cannot be encoded"),
    (result_int, "error_data_nan", "cannot be stored"),
]


@pytest.mark.parametrize(("task", "case", "fragment"), CASES, ids=[case for _, case, _ in CASES])
def test_an_unstorable_result_fails_alone_at_finish(task: Any, case: str, fragment: str) -> None:
    before = add.send(1, 1).unwrap()
    poisoned = task.send(case).unwrap()
    after = add.send(2, 2).unwrap()
    stats = Worker(burst=True).run()
    assert stats.claimed == 3

    result = poisoned.get(timeout_ms=5000)
    assert result.err.error_code == OperationalErrorCode.WORKER_SERIALIZATION_ERROR, result
    assert fragment in result.err.message
    row = Task.objects.get(pk=poisoned.task_id)
    assert (row.status, row.error_code, row.attempt) == ("FAILED", "WORKER_SERIALIZATION_ERROR", 1)
    assert row.attempts.count() == 1

    assert before.get(timeout_ms=5000).unwrap() == 2
    assert after.get(timeout_ms=5000).unwrap() == 4
    assert Task.objects.filter(status="COMPLETED").count() == 2


@pytest.mark.parametrize("case", ["error_message_nul", "error_message_surrogate", "error_data_surrogate"])
def test_unstorable_text_in_an_error_is_replaced_and_the_code_kept(case: str) -> None:
    # An error's text is a diagnosis, not the task's data: U+FFFD stands in for what the
    # database cannot store, and the task keeps the code it failed with.
    poisoned = result_int.send(case).unwrap()
    innocent = add.send(2, 2).unwrap()
    Worker(burst=True).run()

    error = poisoned.get(timeout_ms=5000).unwrap_err()
    assert error.error_code == "BAD"
    assert "\ufffd" in error.message + repr(error.data)
    assert "\x00" not in error.message
    assert innocent.get(timeout_ms=5000).unwrap() == 4


def test_finite_floats_and_escaped_text_are_stored_and_read_back() -> None:
    # Typed floats keep any finite value. In untyped places (dict, Any) PostgreSQL's jsonb keeps
    # numbers as decimals, so a float beyond 1e16 there may come back as an int (docs/api.md).
    value = {"big": 1e15 + 0.5, "tiny": 5e-324, "neg_zero": -0.0, "text": "a\\u0000 😀 null NaN"}
    expected = Reading(values=value, extra=[None, "Infinity"], level=1.7976931348623157e308)
    RETURNS["fine"] = lambda: TaskResult(ok=expected)
    handle = result_model.send("fine").unwrap()
    Worker(burst=True).run()
    assert handle.get(timeout_ms=5000).unwrap() == expected
