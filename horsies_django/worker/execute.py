"""Run one claimed task and turn whatever happens into a stored outcome. Never raises."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..app import Horsies
from ..broker import ClaimedTask
from ..statuses import ERROR_CODE_MAX_LENGTH
from ..types.codec import dumps, encode_error, encode_result_json
from ..types.codes import BuiltInTaskCode, ContractCode, OperationalErrorCode
from ..types.results import TaskError, TaskResult, flatten_exception

logger = logging.getLogger("horsies_django.worker")


@dataclass(frozen=True)
class Outcome:
    """What a run produced, encoded and ready to store.

    `exception` is what the task raised, kept in this process only (for the worker's log, with its
    traceback); it is not sent between processes.
    """

    ok: bool
    result_json: str
    error_code: str | None = None
    error_message: str = ""
    error_traceback: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # An exception may not pickle, and its traceback would not travel anyway.
        return (Outcome, (self.ok, self.result_json, self.error_code, self.error_message, self.error_traceback))


def safe_str(value: object) -> str:
    """`str(value)`, or a placeholder naming its type when its `__str__` raises."""
    try:
        text = str(value)
    except Exception:
        return f"<{type(value).__qualname__} object; its __str__ raised>"
    return text if type(text) is str else f"<{type(value).__qualname__} object>"


def failure(
    code: BuiltInTaskCode | str, message: str, *, exception: BaseException | None = None, data: Any = None
) -> Outcome:
    exception_info = None
    formatted = ""
    if exception is not None:
        exception_info = flatten_exception(exception)
        formatted = exception_info["traceback"]
    error = TaskError(error_code=code, message=message, data=data, exception=exception_info)
    return Outcome(
        ok=False,
        result_json=dumps({"err": encode_error(error)}),
        error_code=str(code),
        error_message=message,
        error_traceback=formatted,
        exception=exception,
    )


# Stored when even building a failure failed; plain ASCII, so every database takes it.
_LAST_RESORT = Outcome(
    ok=False,
    result_json=dumps(
        {
            "err": {
                "error_code": OperationalErrorCode.UNHANDLED_EXCEPTION.value,
                "message": "the worker could not describe how this task failed",
                "data": None,
                "exception": None,
            }
        }
    ),
    error_code=OperationalErrorCode.UNHANDLED_EXCEPTION.value,
    error_message="the worker could not describe how this task failed",
)

# A lone surrogate (a valid str in Python, no valid UTF-8) and NUL, which PostgreSQL's text and
# jsonb refuse. Checked on every database, so that a project that moves to PostgreSQL finds no surprise.
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def _unstorable_text(text: str) -> bool:
    return "\x00" in text or _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    return _SURROGATE.sub(_REPLACEMENT, text.replace("\x00", _REPLACEMENT))


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): _clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    return value


def _json_unstorable(result_json: str) -> bool:
    """Whether the encoded result holds a NUL or a lone surrogate somewhere."""
    if _SURROGATE.search(result_json) is not None:
        return True
    if "\\u0000" not in result_json:
        return False
    # JSON spells NUL `\u0000`; decode to tell it from a string that holds a backslash and "u0000".
    decoded = json.loads(result_json)
    return bool(_clean_json(decoded) != decoded)


def storable(outcome: Outcome, task_name: str) -> Outcome:
    """`outcome` as every supported database can store it, or a `WORKER_SERIALIZATION_ERROR`
    outcome that says why it could not be. An error's text is a diagnosis: NUL and lone surrogates
    in it are replaced by U+FFFD. An ok result is the task's data: it is never altered, it is refused."""
    code = outcome.error_code
    if code is not None and (len(code) > ERROR_CODE_MAX_LENGTH or _unstorable_text(code)):
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"task {task_name!r} returned an error code that cannot be stored (at most {ERROR_CODE_MAX_LENGTH} "
            f"characters, no NUL or lone surrogate): {clean_text(code[:ERROR_CODE_MAX_LENGTH])!r}"
            + ("..." if len(code) > ERROR_CODE_MAX_LENGTH else ""),
        )
    result_json = outcome.result_json
    if _json_unstorable(result_json):
        if outcome.ok:
            return failure(
                OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
                f"the result of task {task_name!r} cannot be stored: it holds a NUL character or a lone "
                "surrogate, which the database refuses",
            )
        result_json = dumps(_clean_json(json.loads(result_json)))
    message, formatted = outcome.error_message, outcome.error_traceback
    if _unstorable_text(message) or _unstorable_text(formatted):
        message, formatted = clean_text(message), clean_text(formatted)
    if (result_json, message, formatted) == (outcome.result_json, outcome.error_message, outcome.error_traceback):
        return outcome
    return Outcome(
        ok=outcome.ok,
        result_json=result_json,
        error_code=code,
        error_message=message,
        error_traceback=formatted,
        exception=outcome.exception,
    )


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a running task may want to know about itself (see `current_task()`)."""

    task_id: str
    name: str
    attempt: int
    claim_token: int


_current: ContextVar[TaskContext | None] = ContextVar("horsies_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task this code runs in, or None outside a worker."""
    return _current.get()


def execute(app: Horsies, claimed: ClaimedTask) -> Outcome:
    """Decode the arguments, call the function, check and encode what it returned."""
    context = TaskContext(
        task_id=claimed.id, name=claimed.name, attempt=claimed.attempt, claim_token=claimed.claim_token
    )
    token = _current.set(context)
    try:
        try:
            outcome = _execute(app, claimed)
        except Exception as exc:  # a fault of the worker's own code here: the task still ends, counted
            logger.exception("the worker failed around task id=%s name=%s", claimed.id, safe_str(claimed.name))
            outcome = failure(
                OperationalErrorCode.UNHANDLED_EXCEPTION,
                f"the worker failed around task {safe_str(claimed.name)!r}: {type(exc).__name__}: {safe_str(exc)}",
                exception=exc,
            )
        return storable(_normalized(outcome), safe_str(claimed.name))
    except Exception:
        logger.exception("could not build an outcome for task id=%s", claimed.id)
        return _LAST_RESORT
    finally:
        _current.reset(token)


def _normalized(outcome: Outcome) -> Outcome:
    """`outcome` with plain `str` text fields (a TaskError may carry any object as its message)."""
    code, message, formatted = outcome.error_code, outcome.error_message, outcome.error_traceback
    if all(value is None or type(value) is str for value in (code, message, formatted)):
        return outcome
    return Outcome(
        ok=outcome.ok,
        result_json=outcome.result_json,
        error_code=None if code is None else safe_str(code),
        error_message=safe_str(message),
        error_traceback=safe_str(formatted),
        exception=outcome.exception,
    )


def _execute(app: Horsies, claimed: ClaimedTask) -> Outcome:
    task = app.get_task(claimed.name)
    if task is None:
        return failure(
            OperationalErrorCode.WORKER_RESOLUTION_ERROR,
            f"no task named {claimed.name!r} is registered in this worker (is its app's tasks.py installed? "
            "A worker started before the task was added must be restarted, or run with --reload)",
        )
    if not isinstance(claimed.arguments, dict):
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"stored arguments of task {claimed.name!r} are not a JSON object: {type(claimed.arguments).__name__}",
        )
    try:
        arguments = task.signature.decode_arguments(claimed.arguments)
    except Exception as exc:  # CodecError, or whatever a validator raises on a hostile stored value
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"stored arguments do not fit task {claimed.name!r}: {safe_str(exc)}",
        )
    try:
        returned = task.fn(**arguments)
        if inspect.iscoroutine(returned):
            returned = asyncio.run(returned)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a task must not end the worker it runs in
        return failure(
            task.code_for_exception(exc),
            f"{type(exc).__name__}: {safe_str(exc)}",
            exception=exc,
            data={"exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}"},
        )
    if not isinstance(returned, TaskResult):
        # horsies' code for this; RETURN_TYPE_MISMATCH is kept for an ok value of the wrong type.
        return failure(
            OperationalErrorCode.TASK_EXCEPTION,
            f"task {claimed.name!r} returned {type(returned).__name__}, not a TaskResult",
        )
    if returned.is_ok():
        try:
            returned = TaskResult(ok=task.signature.ok_adapter.validate_python(returned.unwrap()))
        except Exception as exc:
            return failure(
                ContractCode.RETURN_TYPE_MISMATCH,
                f"task {claimed.name!r} returned an ok value that does not fit its declared type: {safe_str(exc)}",
            )
    try:
        envelope = encode_result_json(returned, task.signature.ok_adapter)
    except Exception as exc:  # CodecError, or whatever a hostile value raises while it is encoded
        return failure(
            OperationalErrorCode.WORKER_SERIALIZATION_ERROR,
            f"the result of task {claimed.name!r} cannot be stored: {safe_str(exc)}",
        )
    if returned.is_ok():
        return Outcome(ok=True, result_json=envelope)
    error = returned.unwrap_err()
    exception = error.exception if isinstance(error.exception, dict) else {}
    return Outcome(
        ok=False,
        result_json=envelope,
        error_code=None if error.error_code is None else str(error.error_code),
        error_message=error.message or "",
        error_traceback=exception.get("traceback", ""),
    )
