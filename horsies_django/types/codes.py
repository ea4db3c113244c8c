"""Built-in error codes. Users pick their own plain-string codes; these are reserved."""

from __future__ import annotations

from enum import StrEnum


class _Code(StrEnum):
    """A code that is also its own string, so `code == "WAIT_TIMEOUT"` holds."""


class OperationalErrorCode(_Code):
    """Something went wrong around the task rather than in its logic."""

    UNHANDLED_EXCEPTION = "UNHANDLED_EXCEPTION"
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


class OutcomeCode(_Code):
    """The task ended without producing a result of its own."""

    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_EXPIRED = "TASK_EXPIRED"
    TASK_TIMEOUT = "TASK_TIMEOUT"


class ContractCode(_Code):
    """The task broke its declared contract."""

    RETURN_TYPE_MISMATCH = "RETURN_TYPE_MISMATCH"


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


BuiltInTaskCode = OperationalErrorCode | RetrievalCode | OutcomeCode | ContractCode | WorkflowCode

BUILTIN_CODES: dict[str, BuiltInTaskCode] = {
    member.value: member
    for family in (OperationalErrorCode, RetrievalCode, OutcomeCode, ContractCode, WorkflowCode)
    for member in family
}


def builtin_code(value: str) -> BuiltInTaskCode | None:
    """Return the built-in code spelled `value`, or None for a user code."""
    return BUILTIN_CODES.get(value)
