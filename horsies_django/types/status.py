"""How one try of a task ended, with horsies' names. Task statuses live in `models.TaskStatus`."""

from __future__ import annotations

from enum import StrEnum


class TaskAttemptOutcome(StrEnum):
    """The outcome of one attempt, as `TaskAttemptInfo.outcome` reports it."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    WORKER_FAILURE = "WORKER_FAILURE"  # the process running it was lost; stored as WORKER_LOST
