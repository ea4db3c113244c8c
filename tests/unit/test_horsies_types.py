"""horsies' names and rules for codes, TaskError, RetryPolicy and send errors (no database)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from horsies_django import (
    TASK_TERMINAL_STATES,
    ContractCode,
    Err,
    Ok,
    OperationalErrorCode,
    RetrievalCode,
    RetryPolicy,
    TaskAttemptOutcome,
    TaskError,
    TaskSendError,
    TaskSendErrorCode,
    TaskSendPayload,
    TaskStatus,
    is_err,
    is_ok,
)
from horsies_django.types.codes import BUILTIN_CODES


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_codes_horsies_users_match_on_exist() -> None:
    assert OperationalErrorCode.TASK_EXCEPTION == "TASK_EXCEPTION"
    assert ContractCode.PYDANTIC_HYDRATION_ERROR == "PYDANTIC_HYDRATION_ERROR"
    assert ContractCode.NO_TYPE_AVAILABLE == "NO_TYPE_AVAILABLE"
    assert RetrievalCode.RESULT_NOT_READY == "RESULT_NOT_READY"
    assert RetrievalCode.RESULT_NOT_AVAILABLE == "RESULT_NOT_AVAILABLE"
    assert {c.value for c in TaskSendErrorCode} == {
        "VALIDATION_FAILED", "ENQUEUE_FAILED", "PAYLOAD_TOO_LARGE", "ASYNC_CONTEXT", "SEND_SUPPRESSED",
        "PAYLOAD_MISMATCH",
    }  # fmt: skip


@pytest.mark.parametrize("code", list(BUILTIN_CODES.values()), ids=str)
def test_every_builtin_code_survives_a_json_round_trip(code: Any) -> None:
    error = TaskError(error_code=code, message="m", data={"k": [1, None]})
    back = TaskError.model_validate_json(error.model_dump_json())
    assert back == error
    assert back.error_code is code


@pytest.mark.parametrize("code", ["OUT_OF_STOCK", None, "\x00", "CAFÉ_✓", "x" * 10_000])
def test_user_codes_survive_a_json_round_trip(code: Any) -> None:
    error = TaskError(error_code=code)
    assert TaskError.model_validate_json(error.model_dump_json()) == error


def test_a_bare_string_spelled_like_a_builtin_code_is_still_refused() -> None:
    with pytest.raises(ValueError, match="OperationalErrorCode.TASK_EXCEPTION"):
        TaskError(error_code="TASK_EXCEPTION")
    with pytest.raises(ValueError, match="not a built-in"):
        TaskError.model_validate_json('{"error_code": {"__builtin_task_code__": "NOPE"}}')


def test_exception_object_is_kept_as_type_message_and_traceback() -> None:
    try:
        raise LookupError("no such order")
    except LookupError as exc:
        error = TaskError(error_code="MISSING", exception=exc)
    assert error.exception is not None
    assert (error.exception["type"], error.exception["module"], error.exception["message"]) == (
        "LookupError",
        "builtins",
        "no such order",
    )
    assert 'raise LookupError("no such order")' in error.exception["traceback"]
    assert TaskError.model_validate_json(error.model_dump_json()) == error


def test_exception_whose_str_raises_is_still_kept() -> None:
    error = TaskError(exception=_BadStr())
    assert error.exception is not None
    assert error.exception["type"] == "_BadStr"
    assert "unprintable" in error.exception["message"]


@pytest.mark.parametrize("bad", [42, "text", ["list"], math.nan])
def test_exception_of_another_type_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        TaskError(exception=bad)


def test_is_ok_and_is_err_narrow_results() -> None:
    good: Ok[int] | Err[str] = Ok(1)
    bad: Ok[int] | Err[str] = Err("no")
    assert is_ok(good) and not is_err(good)
    assert is_err(bad) and not is_ok(bad)


def test_task_status_is_the_models_enum_with_is_terminal() -> None:
    from horsies_django.models import TaskStatus as ModelStatus

    assert TaskStatus is ModelStatus
    assert TaskStatus.FAILED.is_terminal and not TaskStatus.RUNNING.is_terminal
    assert TASK_TERMINAL_STATES == frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
    )
    assert {s for s in TaskStatus if s.is_terminal} == TASK_TERMINAL_STATES
    assert [o.value for o in TaskAttemptOutcome] == ["COMPLETED", "FAILED", "WORKER_FAILURE"]


# -- RetryPolicy -------------------------------------------------------------------------------------

BAD_POLICIES: list[tuple[str, dict[str, Any], str]] = [
    ("fixed-too-few-intervals", {"max_retries": 3, "intervals": [60, 300]}, "one interval per retry"),
    ("fixed-too-many-intervals", {"max_retries": 1, "intervals": [60, 300]}, "one interval per retry"),
    ("fixed-default-intervals-other-count", {"max_retries": 5}, "one interval per retry"),
    (
        "exponential-several-intervals",
        {"max_retries": 3, "intervals": [60, 300, 900], "backoff_strategy": "exponential"},
        "exactly one base interval",
    ),
    ("no-codes", {"auto_retry_for": []}, "at least one error code"),
    ("codes-a-string", {"auto_retry_for": "FLAKY"}, "at least one error code"),
    ("codes-an-int", {"auto_retry_for": 5}, "at least one error code"),
    ("exception-class-name", {"auto_retry_for": ["TimeoutError"]}, "UPPER_SNAKE_CASE"),
    ("lower-case", {"auto_retry_for": ["flaky"]}, "UPPER_SNAKE_CASE"),
    ("nul", {"auto_retry_for": ["A\x00"]}, "UPPER_SNAKE_CASE"),
    ("surrogate", {"auto_retry_for": ["\ud800"]}, "UPPER_SNAKE_CASE"),
    ("code-not-a-string", {"auto_retry_for": [OSError]}, "UPPER_SNAKE_CASE"),
    ("nan-interval", {"max_retries": 1, "intervals": [math.nan]}, "interval"),
    ("inf-interval", {"max_retries": 1, "intervals": [math.inf]}, "interval"),
    ("huge-interval", {"max_retries": 1, "intervals": [10**12]}, "interval"),
    ("intervals-an-int", {"intervals": 60}, "intervals"),
    ("retries-bool", {"max_retries": True}, "max_retries"),
    ("retries-huge", {"max_retries": 10**9}, "max_retries"),
    ("strategy-typo", {"backoff_strategy": "linear"}, "backoff_strategy"),
    ("nan-cap", {"max_delay_seconds": math.nan}, "max_delay_seconds"),
    ("str-cap", {"max_delay_seconds": "60"}, "max_delay_seconds"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [b[1:] for b in BAD_POLICIES], ids=[b[0] for b in BAD_POLICIES])
def test_inconsistent_or_bad_policy_is_a_value_error(kwargs: dict[str, Any], fragment: str) -> None:
    arguments = {"auto_retry_for": ["FLAKY"], **kwargs}
    with pytest.raises(ValueError, match=fragment):
        RetryPolicy(**arguments)


@pytest.mark.parametrize("intervals", [60, "60", None])
def test_fixed_refuses_intervals_that_are_not_a_list(intervals: Any) -> None:
    with pytest.raises(ValueError, match="intervals"):
        RetryPolicy.fixed(intervals, auto_retry_for=["FLAKY"])


def test_jitter_spreads_delays_25_percent_either_way() -> None:
    policy = RetryPolicy.fixed([100], auto_retry_for=["FLAKY"])
    rng = random.Random(7)
    delays = [policy.delay_seconds(1, rng=rng) for _ in range(2000)]
    assert min(delays) >= 75 and max(delays) <= 125
    assert min(delays) < 80 and max(delays) > 120  # both directions are used
    assert RetryPolicy.fixed([100], auto_retry_for=["FLAKY"], jitter=False).delay_seconds(1) == 100


def test_builtin_codes_are_accepted_in_auto_retry_for() -> None:
    policy = RetryPolicy.exponential(1, max_retries=2, auto_retry_for=[OperationalErrorCode.TASK_EXCEPTION])
    assert policy.retries("TASK_EXCEPTION") and not policy.retries("OTHER")


# -- TaskSendError ---------------------------------------------------------------------------------


def _payload(**changes: Any) -> TaskSendPayload:
    values: dict[str, Any] = {
        "task_name": "t",
        "queue_name": "default",
        "priority": 100,
        "kwargs_json": '{"card":"4111 1111 1111 1111"}',
        "sent_at": datetime(2026, 1, 1, tzinfo=UTC),
        "good_until": None,
        "enqueue_delay_seconds": None,
        "max_retries": 0,
        "idempotency_key": None,
    }
    return TaskSendPayload(**{**values, **changes})


def test_payload_fingerprint_notices_any_change() -> None:
    payload = _payload()
    assert payload.fingerprint() == payload.enqueue_sha == _payload().enqueue_sha
    altered = dataclasses.replace(payload, kwargs_json="{}")
    assert altered.enqueue_sha == payload.enqueue_sha != altered.fingerprint()
    assert _payload(kwargs_json='{"x":"\ud800"}').fingerprint()  # a lone surrogate does not break it


def test_send_error_repr_leaves_out_the_payload_and_exception() -> None:
    error = TaskSendError(
        code=TaskSendErrorCode.ENQUEUE_FAILED,
        message="database error",
        retryable=True,
        task_id="x",
        payload=_payload(),
        exception=RuntimeError("password=hunter2"),
    )
    assert "4111" not in repr(error) and "hunter2" not in repr(error)
    assert error.payload is not None and error.exception is not None
