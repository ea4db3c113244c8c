"""Typed JSON codec: task arguments and results go through pydantic adapters built from
the task function's annotations, so the type that goes in is the type that comes out."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from .codes import BUILTIN_CODES
from .results import TaskError, TaskResult


class TaskDefinitionError(TypeError):
    """A decorated task function cannot be registered as it is written."""


class CodecError(ValueError):
    """A value could not be encoded or decoded."""


def dumps(value: Any) -> str:
    """Encode plain JSON data; NaN and infinities are refused, since JSON has no spelling for them."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from exc


# A NUL character as JSON spells it (an even run of backslashes, then \u0000).
_JSON_NUL = re.compile(r"(?:^|[^\\])(?:\\\\)*\\u0000")


def dumps_storable(value: Any) -> str:
    """`dumps`, also refusing text that a database refuses, so that the refusal comes before the
    write and not from it (a failed write would fail the same way on every try): a lone surrogate
    is not UTF-8, and PostgreSQL stores no NUL character, in text or in JSON."""
    text = dumps(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CodecError(f"text with a lone surrogate ({text[exc.start : exc.end]!r}) cannot be stored") from exc
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise CodecError("text with a NUL character (\\x00) cannot be stored")
    return text


def loads(raw: str | bytes | Any) -> Any:
    """Decode JSON text; values a driver already decoded are returned as they are."""
    if isinstance(raw, (str, bytes, bytearray)):
        return json.loads(raw)
    return raw


def _describe(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else getattr(fn, "__module__", "?")
    return f"{getattr(fn, '__qualname__', fn)!r} ({where})"


def _adapter(hint: Any, what: str, fn: Callable[..., Any]) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(hint)
    except Exception as exc:  # pydantic raises several error types for unsupported hints
        raise TaskDefinitionError(
            f"task {_describe(fn)}: {what} has type {hint!r}, which cannot be encoded as JSON "
            f"(use a pydantic model, dataclass, datetime, date, UUID, Decimal or JSON value): {exc}"
        ) from exc


@dataclass(frozen=True)
class TaskSignature:
    """The encoders a task needs: one per parameter, one for its `ok` value."""

    parameters: Mapping[str, inspect.Parameter]
    argument_adapters: Mapping[str, TypeAdapter[Any]]
    ok_adapter: TypeAdapter[Any]
    signature: inspect.Signature

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> TaskSignature:
        """Read `fn`'s annotations; raise `TaskDefinitionError` naming the function if they do not fit."""
        try:
            hints = get_type_hints(fn)
        except Exception as exc:
            raise TaskDefinitionError(f"task {_describe(fn)}: cannot resolve its annotations: {exc}") from exc
        returns = hints.get("return")
        if get_origin(returns) is not TaskResult or len(get_args(returns)) != 2:
            raise TaskDefinitionError(
                f"task {_describe(fn)} must be annotated '-> TaskResult[T, TaskError]', got {returns!r}"
            )
        ok_type, err_type = get_args(returns)
        if not (isinstance(err_type, type) and issubclass(err_type, TaskError)):
            raise TaskDefinitionError(
                f"task {_describe(fn)}: the error side of its TaskResult must be TaskError, got {err_type!r}"
            )
        signature = inspect.signature(fn)
        adapters: dict[str, TypeAdapter[Any]] = {}
        for name, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TaskDefinitionError(
                    f"task {_describe(fn)}: parameter {name!r} is {param.kind.description}; task "
                    "arguments are stored by name, so use ordinary named parameters"
                )
            if name not in hints:
                raise TaskDefinitionError(
                    f"task {_describe(fn)}: parameter {name!r} needs a type annotation so its value "
                    "can be encoded and decoded"
                )
            adapters[name] = _adapter(hints[name], f"parameter {name!r}", fn)
        return cls(
            parameters=dict(signature.parameters),
            argument_adapters=adapters,
            ok_adapter=_adapter(ok_type, "the ok value of its TaskResult", fn),
            signature=signature,
        )

    def encode_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind a call to the signature and encode each argument; raise `CodecError` if it does not fit."""
        encoded = self._encode_arguments(args, kwargs)
        dumps(encoded)  # NaN and infinities pass pydantic but have no JSON spelling.
        return encoded

    def encode_arguments_json(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """`encode_arguments` as the JSON text to store; raise `CodecError` if it does not fit."""
        return dumps(self._encode_arguments(args, kwargs))

    def _encode_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CodecError(str(exc)) from exc
        encoded: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            adapter = self.argument_adapters[name]
            try:
                encoded[name] = adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as exc:
                raise CodecError(f"argument {name!r}: {_first_error(exc)}") from exc
            except Exception as exc:
                raise CodecError(f"argument {name!r} cannot be encoded: {exc}") from exc
        return encoded

    def decode_arguments(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """Turn stored arguments back into the annotated types; raise `CodecError` if they do not fit."""
        unknown = set(encoded) - set(self.argument_adapters)
        if unknown:
            raise CodecError(f"unknown argument(s) {sorted(unknown)}")
        try:
            return {name: self.argument_adapters[name].validate_python(value) for name, value in encoded.items()}
        except ValidationError as exc:
            raise CodecError(_first_error(exc)) from exc


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location + ': ' if location else ''}{first.get('msg', 'invalid value')}{more}"


def _error_body(error: TaskError) -> dict[str, Any]:
    code = error.error_code
    try:
        # Any value pydantic can dump (models, dataclasses, datetimes, UUIDs, ...), as horsies takes it.
        data = to_jsonable_python(error.data)
        exception = to_jsonable_python(error.exception)
    except Exception as exc:  # pydantic raises several error types for values it cannot dump
        raise CodecError(f"TaskError.data cannot be encoded as JSON: {exc}") from exc
    return {
        "error_code": None if code is None else str(code),
        "message": error.message,
        "data": data,
        "exception": exception,
    }


def encode_error(error: TaskError) -> dict[str, Any]:
    """Encode a TaskError as plain JSON data; raise `CodecError` if its `data` is not JSON."""
    body = _error_body(error)
    dumps_storable(body)  # Fail here, with the worker still holding the task, rather than at write time.
    return body


def _envelope(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> dict[str, Any]:
    if result.is_err():
        error = result.unwrap_err()
        if not isinstance(error, TaskError):
            raise CodecError(f"the err side must be a TaskError, got {type(error).__name__}")
        return {"err": _error_body(error)}
    value = result.unwrap()
    try:
        return {"ok": ok_adapter.dump_python(value, mode="json") if ok_adapter else value}
    except Exception as exc:
        raise CodecError(f"the ok value cannot be encoded: {exc}") from exc


def encode_result(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> dict[str, Any]:
    """Encode a TaskResult envelope: `{"ok": value}` or `{"err": {...}}`; raise `CodecError` if it
    is not JSON."""
    envelope = _envelope(result, ok_adapter)
    dumps_storable(envelope)
    return envelope


def encode_result_json(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> str:
    """`encode_result` as the JSON text to store, encoded once."""
    return dumps_storable(_envelope(result, ok_adapter))


def decode_error(body: Mapping[str, Any]) -> TaskError:
    raw_code = body.get("error_code")
    code = BUILTIN_CODES.get(raw_code, raw_code) if isinstance(raw_code, str) else raw_code
    return TaskError(
        error_code=code, message=body.get("message"), data=body.get("data"), exception=body.get("exception")
    )


def decode_result(envelope: Any, ok_adapter: TypeAdapter[Any] | None) -> TaskResult[Any, TaskError]:
    """Decode a stored envelope; with no adapter the ok value stays plain JSON. Raises `CodecError`."""
    if not isinstance(envelope, Mapping) or len(envelope) != 1 or not ({"ok", "err"} & set(envelope)):
        raise CodecError(f"not a TaskResult envelope: {envelope!r:.200}")
    try:
        if "err" in envelope:
            return TaskResult(err=decode_error(envelope["err"]))
        value = envelope["ok"]
        return TaskResult(ok=ok_adapter.validate_python(value) if ok_adapter else value)
    except (ValidationError, TypeError, AttributeError) as exc:
        raise CodecError(f"stored result does not fit the task's types: {exc}") from exc
