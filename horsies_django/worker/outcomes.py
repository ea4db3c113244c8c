"""Store finished attempts so that one the database refuses cannot hold back the others, and
say in the worker's log how each attempt ended."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..broker import Broker, BrokerError, ClaimedTask, Finish
from ..statuses import AttemptOutcome, TaskStatus
from ..types.codec import dumps, encode_error
from ..types.codes import OperationalErrorCode
from ..types.results import TaskError
from .execute import Outcome, clean_text

logger = logging.getLogger("horsies_django.worker")

# How much of the database's complaint to keep in the replacement outcome's message.
REASON_CHARS = 500


@dataclass
class Saved:
    """What `save_finishes` wrote: the finishes sent (refused ones replaced), the ids the database
    applied, and what is left for a later try because the database failed (`error`)."""

    written: list[Finish] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)
    unsaved: list[Finish] = field(default_factory=list)
    error: BrokerError | None = None


def refused_finish(finish: Finish, error: BrokerError) -> Finish:
    """What to store instead of a finish the database refused: the task FAILED with
    `WORKER_SERIALIZATION_ERROR`, in plain text every database takes."""
    reason = clean_text(str(error))[:REASON_CHARS]
    message = f"the database refused to store this attempt's outcome: {reason}"
    code = OperationalErrorCode.WORKER_SERIALIZATION_ERROR
    return dataclasses.replace(
        finish,
        status=TaskStatus.FAILED,
        result_json=dumps({"err": encode_error(TaskError(error_code=code, message=message))}),
        error_code=code.value,
        error_message=message,
        error_traceback="",
        worker_id=clean_text(finish.worker_id)[:255],
        attempt_outcome=AttemptOutcome.FAILED,
        run_at=None,
        release=False,
        crash=False,
    )


def save_finishes(broker: Broker, batch: Sequence[Finish]) -> Saved:
    """Write `batch`; if the database refuses it for what it holds, split it in halves until the
    refused rows are alone, and store each of those as `refused_finish`. A transient error (lost
    connection, database down) stops there: what is not written yet is handed back, whole."""
    saved = Saved()
    parts: list[list[Finish]] = [list(batch)]
    replacements: set[int] = set()
    while parts:
        part = parts.pop()
        try:
            saved.applied |= broker.finish_many(part)
        except BrokerError as exc:
            if exc.transient:
                saved.unsaved = [finish for rest in (part, *reversed(parts)) for finish in rest]
                saved.error = exc
                return saved
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]
                continue
            (refused,) = part
            if id(refused) in replacements:
                # Even the plain replacement was refused; the task's lease runs out and it runs again.
                logger.error("could not store any outcome for task id=%s: %s", refused.task_id, exc)
                continue
            logger.error("the database refused the outcome of task id=%s: %s", refused.task_id, exc)
            replacement = refused_finish(refused, exc)
            replacements.add(id(replacement))
            parts.append([replacement])
            continue
        saved.written += part
    return saved


def log_outcome(task: ClaimedTask, finish: Finish, outcome: Outcome | None = None) -> None:
    """One line per ended attempt: DEBUG for a success, WARNING for a failure that will be tried
    again, ERROR (with the exception, for error trackers) for a task that ended failed."""
    if finish.status == TaskStatus.COMPLETED:
        logger.debug("task completed name=%s id=%s attempt=%d", task.name, task.id, task.attempt)
        return
    if finish.release or finish.attempt_outcome is None:
        return  # a release is logged where it happens, and is not a failed attempt
    exception = outcome.exception if outcome is not None else None
    if finish.status == TaskStatus.FAILED:
        formatted = "" if exception is not None or not finish.error_traceback else f"\n{finish.error_traceback}"
        logger.error(
            "task failed name=%s id=%s attempt=%d error_code=%s: %s%s",
            task.name,
            task.id,
            task.attempt,
            finish.error_code,
            finish.error_message,
            formatted,
            exc_info=exception,
        )
        return
    logger.warning(
        "task attempt failed name=%s id=%s attempt=%d error_code=%s: %s; it runs again at %s",
        task.name,
        task.id,
        task.attempt,
        finish.error_code,
        finish.error_message,
        finish.run_at.isoformat() if finish.run_at else "once it is claimed",
    )
