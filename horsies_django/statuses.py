"""Task statuses and the sets the queue's SQL, the API and the worker share.

Apart from `models.py` (which re-exports them) so that the broker and the API can use them at
import time, before Django's app registry is ready.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import TextChoices


class TaskStatus(TextChoices):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """Whether a task in this status has ended for good (horsies' `TaskStatus.is_terminal`)."""
        return self in ENDED


class AttemptOutcome(TextChoices):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    WORKER_LOST = "WORKER_LOST"


# Waiting to be claimed (at or after its `run_at`).
READY = frozenset({TaskStatus.PENDING})
# Held by a worker under a claim token and a lease.
ACTIVE = frozenset({TaskStatus.CLAIMED, TaskStatus.RUNNING})
# Ended: the row holds its final result and no worker will touch it again.
ENDED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
# Ended without success: an operator may send these round again.
ENDED_UNSUCCESSFULLY = ENDED - {TaskStatus.COMPLETED}


# The `error_code` columns' width; the worker refuses longer codes before it stores an outcome.
ERROR_CODE_MAX_LENGTH = 100


def sql_list(statuses: Iterable[TaskStatus]) -> str:
    """The statuses as SQL literals for an `IN (...)` list, in a stable order."""
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))
