"""The pure parts of workflows: a TaskResult parameter's codec, join verdicts, cycle finding,
and WorkflowContext. No database."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from horsies_django import OperationalErrorCode, TaskError, TaskResult, WorkflowCode, WorkflowContext
from horsies_django.broker.workflows import _verdict
from horsies_django.types.codec import CodecError, TaskSignature
from horsies_django.workflows.spec import _find_cycle


class Loud:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


def takes(raw: TaskResult[int, TaskError]) -> TaskResult[int, TaskError]:
    return raw


ADAPTER: TypeAdapter[TaskResult[int, TaskError]] = TypeAdapter(TaskResult[int, TaskError])


def test_a_task_result_parameter_round_trips_ok_and_err() -> None:
    # Built-in codes are stored as strings and come back as their enum members.
    stored = ADAPTER.validate_python({"err": {"error_code": "UNHANDLED_EXCEPTION"}}).unwrap_err()
    assert stored.error_code is OperationalErrorCode.UNHANDLED_EXCEPTION
    assert ADAPTER.validate_python({"ok": "7"}) == TaskResult(ok=7)
    err = ADAPTER.validate_python({"err": {"error_code": "UPSTREAM_SKIPPED", "message": "m"}}).unwrap_err()
    assert err.error_code is WorkflowCode.UPSTREAM_SKIPPED
    assert ADAPTER.dump_python(TaskResult(ok=3), mode="json") == {"ok": 3}
    dumped = ADAPTER.dump_python(TaskResult(err=TaskError(error_code="MINE", message="x")), mode="json")
    assert dumped["err"]["error_code"] == "MINE"
    signature = TaskSignature.of(takes)
    assert signature.decode_arguments({"raw": {"ok": 1}}) == {"raw": TaskResult(ok=1)}
    assert signature.encode_arguments((TaskResult(ok=2),), {}) == {"raw": {"ok": 2}}


@pytest.mark.parametrize(
    "stored",
    [
        {"ok": "not a number"},
        {"ok": 1, "err": None},
        {},
        {"nope": 1},
        [],
        None,
        "\x00",
        "\ud800",
        math.nan,
        10**400,
        {"err": "not a dict"},
        Loud(),
    ],
)
def test_a_bad_stored_task_result_is_a_validation_error(stored: Any) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(stored)
    with pytest.raises(CodecError):
        TaskSignature.of(takes).decode_arguments({"raw": stored})


@pytest.mark.parametrize("value", [TaskResult(ok=math.inf), TaskResult(ok="x"), TaskResult(ok=Loud())])
def test_an_unencodable_task_result_argument_is_refused(value: Any) -> None:
    with pytest.raises(CodecError):
        TaskSignature.of(takes).encode_arguments((value,), {})


@pytest.mark.parametrize(
    ("join", "min_success", "allow_failed", "total", "ended", "succeeded", "expected"),
    [
        ("all", None, False, 3, 2, 2, None),
        ("all", None, False, 3, 3, 3, True),
        ("all", None, False, 3, 3, 2, False),
        ("all", None, True, 3, 3, 0, True),
        ("any", None, False, 3, 1, 1, True),
        ("any", None, False, 3, 2, 0, None),
        ("any", None, False, 3, 3, 0, False),
        ("any", None, True, 3, 3, 0, True),
        ("quorum", 2, False, 3, 2, 2, True),
        ("quorum", 2, False, 3, 2, 1, None),
        ("quorum", 2, False, 3, 2, 0, False),
        ("quorum", 2, True, 3, 2, 0, None),
        ("quorum", 2, True, 3, 3, 0, True),
    ],
)
def test_join_verdicts(
    join: str, min_success: int | None, allow_failed: bool, total: int, ended: int, succeeded: int, expected: Any
) -> None:
    assert _verdict(join, min_success, allow_failed, total, ended, succeeded) is expected


@pytest.mark.parametrize(
    ("waits", "cyclic"),
    [
        ([[]], False),
        ([[0]], True),
        ([[], [0], [1], [0, 2]], False),
        ([[2], [0], [1]], True),
        ([[], [0], [1, 3], [2]], True),
        ([[] for _ in range(5000)], False),
        ([[i - 1] if i else [] for i in range(5000)], False),  # a long chain: no recursion limit
        ([[i - 1] if i else [4999] for i in range(5000)], True),
    ],
)
def test_find_cycle(waits: list[list[int]], cyclic: bool) -> None:
    cycle = _find_cycle(waits)
    assert (cycle is not None) == cyclic
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(cycle[i + 1] in waits[cycle[i]] for i in range(len(cycle) - 1))


def test_workflow_context_result_for() -> None:
    ctx = WorkflowContext(
        workflow_id="w", workflow_name="n", node_id="me", node_index=2, results={"a": {"ok": 4}, "bad": {"x": 1}}
    )
    assert ctx.result_for("a") == TaskResult(ok=4)
    assert ctx.result_for("missing").unwrap_err().error_code == "RESULT_NOT_AVAILABLE"
    assert ctx.result_for("bad").unwrap_err().error_code == "RESULT_NOT_AVAILABLE"
    assert ctx.result_for(Loud()).unwrap_err().error_code == "RESULT_NOT_AVAILABLE"  # type: ignore[arg-type]
