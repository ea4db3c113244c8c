"""Result values: `Ok`/`Err` for send, `TaskResult`/`TaskError` for tasks. No Django here."""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeAlias, TypeGuard, TypeVar, final, get_args

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, TypeAdapter, field_serializer, field_validator
from pydantic_core import CoreSchema, core_schema

from .codes import BUILTIN_CODES, BuiltInTaskCode, TaskSendErrorCode

T = TypeVar("T")
E = TypeVar("E")
U = TypeVar("U")


@final
@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """The success side of a `Result`; `case Ok(value)` matches it."""

    ok_value: T
    __match_args__ = ("ok_value",)

    def is_ok(self) -> bool:
        return True

    def is_err(self) -> bool:
        return False

    def unwrap(self) -> T:
        return self.ok_value

    def unwrap_err(self) -> NoReturn:
        raise ValueError(f"unwrap_err() called on {self!r}")

    def unwrap_or(self, default: object) -> T:
        return self.ok_value

    def map(self, fn: Callable[[T], U]) -> Ok[U]:
        return Ok(fn(self.ok_value))

    def and_then(self, fn: Callable[[T], Result[U, Any]]) -> Result[U, Any]:
        return fn(self.ok_value)


@final
@dataclass(frozen=True, slots=True)
class Err(Generic[E]):
    """The failure side of a `Result`; `case Err(error)` matches it."""

    err_value: E
    __match_args__ = ("err_value",)

    def is_ok(self) -> bool:
        return False

    def is_err(self) -> bool:
        return True

    def unwrap(self) -> NoReturn:
        raise ValueError(f"unwrap() called on {self!r}")

    def unwrap_err(self) -> E:
        return self.err_value

    def unwrap_or(self, default: U) -> U:
        return default

    def map(self, fn: Callable[[Any], Any]) -> Err[E]:
        return self

    def and_then(self, fn: Callable[[Any], Any]) -> Err[E]:
        return self


Result: TypeAlias = Ok[T] | Err[E]


_BUILTIN_TAG = "__builtin_task_code__"


def flatten_exception(exc: BaseException) -> dict[str, str]:
    """An exception as the plain data a TaskError stores: its type, module, message and traceback."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ raises must not stop the error being stored
        message = f"<unprintable {type(exc).__name__}>"
    try:
        formatted = "".join(traceback.format_exception(exc))
    except Exception:
        formatted = ""
    return {
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": message,
        "traceback": formatted,
    }


class TaskError(BaseModel):
    """Why a task failed: a code (user string or built-in enum), a message and optional data.

    `exception` may be given an exception object, as in horsies; it is kept as its type, module,
    message and traceback (a dict), which is also what comes back from `get()`. `data` takes any
    value the codec can encode (JSON values, models, dataclasses, datetimes, UUIDs, ...).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    error_code: BuiltInTaskCode | str | None = None
    message: str | None = None
    data: Any = None
    # Typed as horsies types it, so that `TaskError(exception=exc)` type-checks; the validator
    # below turns an exception into its dict at once, so a TaskError only ever holds a dict.
    exception: dict[str, Any] | BaseException | None = None

    @field_validator("error_code", mode="before")
    @classmethod
    def _no_spoofed_builtin(cls, value: object) -> object:
        # A tagged code is how model_dump_json() writes built-in codes; read it back as the member.
        if isinstance(value, dict) and set(value) == {_BUILTIN_TAG}:
            tagged = value[_BUILTIN_TAG]
            if isinstance(tagged, str) and tagged in BUILTIN_CODES:
                return BUILTIN_CODES[tagged]
            raise ValueError(f"{tagged!r} is not a built-in error code")
        # Built-in codes are reserved: a bare string spelled like one is almost always a typo
        # for the enum member, and letting it through would make user errors look operational.
        if isinstance(value, str) and not isinstance(value, BuiltInTaskCode) and value in BUILTIN_CODES:
            raise ValueError(
                f"error_code {value!r} is a built-in code; pass {type(BUILTIN_CODES[value]).__name__}."
                f"{value} instead of the string"
            )
        return value

    @field_validator("exception", mode="before")
    @classmethod
    def _flatten_exception(cls, value: object) -> object:
        return flatten_exception(value) if isinstance(value, BaseException) else value

    @field_serializer("error_code", when_used="json")
    def _tag_builtin(self, code: BuiltInTaskCode | str | None) -> object:
        # Tagged so that model_validate_json() tells a built-in code from a user string.
        return {_BUILTIN_TAG: code.value} if isinstance(code, BuiltInTaskCode) else code


_MISSING: Any = object()


class TaskResult(Generic[T, E]):
    """What every task returns: exactly one of `ok=` and `err=`."""

    __slots__ = ("_ok", "_err")
    __match_args__ = ("ok", "err")

    def __init__(self, *, ok: T = _MISSING, err: E = _MISSING) -> None:
        if (ok is _MISSING) == (err is _MISSING):
            raise ValueError("TaskResult takes exactly one of ok= or err=")
        self._ok = ok
        self._err = err

    def is_ok(self) -> bool:
        return self._err is _MISSING

    def is_err(self) -> bool:
        return self._err is not _MISSING

    @property
    def ok(self) -> T | None:
        """The success value, or None when this is an error."""
        return None if self._ok is _MISSING else self._ok

    @property
    def err(self) -> E | None:
        """The error, or None when this is a success."""
        return None if self._err is _MISSING else self._err

    @property
    def ok_value(self) -> T:
        return self.unwrap()

    @property
    def err_value(self) -> E:
        return self.unwrap_err()

    def unwrap(self) -> T:
        if self._ok is _MISSING:
            raise ValueError(f"unwrap() called on an error result: {self._err!r}")
        return self._ok

    def unwrap_err(self) -> E:
        if self._err is _MISSING:
            raise ValueError("unwrap_err() called on a success result")
        return self._err

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskResult):
            return NotImplemented
        return bool(self._ok == other._ok and self._err == other._err)

    def __hash__(self) -> int:
        raise TypeError("TaskResult is not hashable")

    def __repr__(self) -> str:
        if self.is_ok():
            return f"TaskResult(ok={self._ok!r})"
        return f"TaskResult(err={self._err!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """A parameter annotated `TaskResult[T, TaskError]` (a workflow's `args_from`) is stored as
        the envelope the upstream task's result is stored as, and decoded back with T's adapter."""
        from .codec import CodecError, decode_result, encode_result

        args = get_args(source)
        ok_adapter: TypeAdapter[Any] = TypeAdapter(args[0] if args else Any)

        def validate(value: Any) -> TaskResult[Any, TaskError]:
            if isinstance(value, TaskResult):
                if value.is_err():
                    return value
                return TaskResult(ok=ok_adapter.validate_python(value.unwrap()))
            if not isinstance(value, dict):
                raise ValueError(f"expected a TaskResult or its stored form, got {type(value).__name__}")
            try:
                return decode_result(value, ok_adapter)
            except CodecError as exc:
                raise ValueError(str(exc)) from None

        def serialize(value: TaskResult[Any, TaskError]) -> dict[str, Any]:
            return encode_result(value, ok_adapter)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(serialize)
        )


@dataclass(frozen=True, slots=True)
class TaskSendPayload:
    """What a send would have written, kept on its `TaskSendError` so `retry_send()` can write
    exactly that, under the same task id. `enqueue_sha` fingerprints the rest."""

    task_name: str
    queue_name: str
    priority: int
    kwargs_json: str
    sent_at: datetime
    good_until: datetime | None
    enqueue_delay_seconds: float | None  # None for send(); the delay for schedule()
    max_retries: int
    idempotency_key: str | None
    enqueue_sha: str = ""
    args_json: str = "[]"  # arguments are bound and stored by name, so never any positional ones

    def __post_init__(self) -> None:
        if not self.enqueue_sha:
            object.__setattr__(self, "enqueue_sha", self.fingerprint())

    def fingerprint(self) -> str:
        """SHA-256 of every field but the fingerprint itself."""
        fields = [
            self.task_name,
            self.queue_name,
            str(self.priority),
            self.args_json,
            self.kwargs_json,
            self.sent_at.isoformat(),
            "" if self.good_until is None else self.good_until.isoformat(),
            "" if self.enqueue_delay_seconds is None else repr(float(self.enqueue_delay_seconds)),
            str(self.max_retries),
            "" if self.idempotency_key is None else self.idempotency_key,
        ]
        return hashlib.sha256("\x1f".join(fields).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TaskSendError:
    """Why a send wrote nothing. `retryable` says whether sending again may succeed.

    `payload` is what would have been written (for `ENQUEUE_FAILED`, so `task.retry_send(err)` can
    replay it) and `exception` the database error behind it, if any. The repr leaves both out:
    arguments may hold personal data, and errors get logged.
    """

    code: TaskSendErrorCode
    message: str
    retryable: bool = False
    task_id: str | None = None
    payload: TaskSendPayload | None = field(default=None, repr=False, compare=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)


TaskSendResult: TypeAlias = Ok[T] | Err[TaskSendError]


def is_ok(result: Result[T, E]) -> TypeGuard[Ok[T]]:
    """True for `Ok(...)`; narrows the type, as horsies' `is_ok` does."""
    return isinstance(result, Ok)


def is_err(result: Result[T, E]) -> TypeGuard[Err[E]]:
    """True for `Err(...)`; narrows the type, as horsies' `is_err` does."""
    return isinstance(result, Err)
