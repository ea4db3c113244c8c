"""Result values: `Ok`/`Err` for send, `TaskResult`/`TaskError` for tasks. No Django here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeAlias, TypeVar, final, get_args

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, TypeAdapter, field_validator
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


class TaskError(BaseModel):
    """Why a task failed: a code (user string or built-in enum), a message and optional data.

    `exception` holds a raised exception's type, module, message and traceback when the
    worker caught one; it is kept for the admin and never needs to be set by hand.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    error_code: BuiltInTaskCode | str | None = None
    message: str | None = None
    data: Any = None
    exception: dict[str, str] | None = None

    @field_validator("error_code", mode="before")
    @classmethod
    def _no_spoofed_builtin(cls, value: object) -> object:
        # Built-in codes are reserved: a bare string spelled like one is almost always a typo
        # for the enum member, and letting it through would make user errors look operational.
        if isinstance(value, str) and not isinstance(value, BuiltInTaskCode) and value in BUILTIN_CODES:
            raise ValueError(
                f"error_code {value!r} is a built-in code; pass {type(BUILTIN_CODES[value]).__name__}."
                f"{value} instead of the string"
            )
        return value


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
class TaskSendError:
    """Why a send wrote nothing. `retryable` says whether sending again may succeed."""

    code: TaskSendErrorCode
    message: str
    retryable: bool = False
    task_id: str | None = None


TaskSendResult: TypeAlias = Ok[T] | Err[TaskSendError]
