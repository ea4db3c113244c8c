"""Built-in error codes. Users pick their own plain-string codes; these are reserved."""

from __future__ import annotations

import re
from enum import StrEnum


class _Code(StrEnum):
    """A code that is also its own string, so `code == "WAIT_TIMEOUT"` holds."""


class OperationalErrorCode(_Code):
    """Something went wrong around the task rather than in its logic."""

    UNHANDLED_EXCEPTION = "UNHANDLED_EXCEPTION"
    TASK_EXCEPTION = "TASK_EXCEPTION"  # the task returned something that is not a TaskResult
    WORKER_CRASHED = "WORKER_CRASHED"
    WORKER_RESOLUTION_ERROR = "WORKER_RESOLUTION_ERROR"
    WORKER_SERIALIZATION_ERROR = "WORKER_SERIALIZATION_ERROR"
    RESULT_DESERIALIZATION_ERROR = "RESULT_DESERIALIZATION_ERROR"
    BROKER_ERROR = "BROKER_ERROR"


class RetrievalCode(_Code):
    """Why a result could not be read (the task itself may be fine)."""

    WAIT_TIMEOUT = "WAIT_TIMEOUT"
    TASK_NOT_FOUND = "TASK_NOT_FOUND"
    RESULT_NOT_AVAILABLE = "RESULT_NOT_AVAILABLE"
    RESULT_NOT_READY = "RESULT_NOT_READY"  # reserved for horsies code; get() waits instead


class OutcomeCode(_Code):
    """The task ended without producing a result of its own."""

    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_EXPIRED = "TASK_EXPIRED"
    TASK_TIMEOUT = "TASK_TIMEOUT"


class ContractCode(_Code):
    """The task broke its declared contract."""

    RETURN_TYPE_MISMATCH = "RETURN_TYPE_MISMATCH"  # an ok value that does not fit the declared type
    # Kept so that horsies code matching on them still imports; horsies_django never produces
    # them (a stored value that no longer fits is RESULT_DESERIALIZATION_ERROR, and a handle with
    # no registered task returns the value as plain JSON).
    PYDANTIC_HYDRATION_ERROR = "PYDANTIC_HYDRATION_ERROR"
    NO_TYPE_AVAILABLE = "NO_TYPE_AVAILABLE"


class WorkflowCode(_Code):
    """Why a workflow, or one of its nodes, has no result of its own."""

    WORKFLOW_PAUSED = "WORKFLOW_PAUSED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    UPSTREAM_SKIPPED = "UPSTREAM_SKIPPED"
    WORKFLOW_SUCCESS_CASE_NOT_MET = "WORKFLOW_SUCCESS_CASE_NOT_MET"
    WORKFLOW_NOT_FOUND = "WORKFLOW_NOT_FOUND"


class TaskSendErrorCode(_Code):
    """Why `send()` / `schedule()` wrote nothing."""

    VALIDATION_FAILED = "VALIDATION_FAILED"
    ENQUEUE_FAILED = "ENQUEUE_FAILED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    ASYNC_CONTEXT = "ASYNC_CONTEXT"
    SEND_SUPPRESSED = "SEND_SUPPRESSED"  # sent while task modules were being imported
    PAYLOAD_MISMATCH = "PAYLOAD_MISMATCH"  # retry_send() got a payload that was altered


BuiltInTaskCode = OperationalErrorCode | RetrievalCode | OutcomeCode | ContractCode | WorkflowCode

BUILTIN_CODES: dict[str, BuiltInTaskCode] = {
    member.value: member
    for family in (OperationalErrorCode, RetrievalCode, OutcomeCode, ContractCode, WorkflowCode)
    for member in family
}


def builtin_code(value: str) -> BuiltInTaskCode | None:
    """Return the built-in code spelled `value`, or None for a user code."""
    return BUILTIN_CODES.get(value)


_CODE_SPELLING = re.compile(r"^[A-Z][A-Z0-9_]*$")
MAX_CODE_LENGTH = 100  # the width of the error_code columns


def code_spelling_problem(code: object, where: str) -> str | None:
    """Why `code` cannot be an error code a policy or mapper names, or None if it can.

    Codes are UPPER_SNAKE_CASE strings, as in horsies: an exception class name such as
    "TimeoutError" in `auto_retry_for` would never match a stored code, so it is refused early.
    """
    if not isinstance(code, str) or not _CODE_SPELLING.match(code) or len(code) > MAX_CODE_LENGTH:
        shown = repr(code) if not isinstance(code, str) or len(code) <= 60 else f"{code[:60]!r}... ({len(code)} chars)"
        return (
            f"{where} must be an UPPER_SNAKE_CASE error code of at most {MAX_CODE_LENGTH} characters "
            f"such as 'RATE_LIMITED', got {shown}"
        )
    return None
