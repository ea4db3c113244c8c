"""Typed JSON codec: task arguments and results go through pydantic adapters built from
the task function's annotations, so the type that goes in is the type that comes out."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NotRequired, Required, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, before Python 3.12

from .codes import BUILTIN_CODES
from .results import TaskError, TaskResult


class TaskDefinitionError(TypeError):
    """A decorated task function cannot be registered as it is written."""


class CodecError(ValueError):
    """A value could not be encoded or decoded."""


class UnstorableValueError(CodecError):
    """A value that JSON or the database cannot hold as it is: NaN or an infinity anywhere (pydantic
    would quietly write `null` for one inside a `dict`, `list` or `Any`), a lone surrogate, or a
    NUL character (PostgreSQL's `jsonb` has no place for `\\u0000`). Refused everywhere alike, so
    that a value that works on SQLite works on PostgreSQL too."""


def dumps(value: Any) -> str:
    """Encode plain JSON data; NaN and infinities are refused, since JSON has no spelling for them."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise CodecError(_text(exc)) from exc


# A NUL character as JSON spells it (an even run of backslashes, then \u0000).
def loads(raw: str | bytes | Any) -> Any:
    """Decode JSON text; values a driver already decoded are returned as they are."""
    if isinstance(raw, (str, bytes, bytearray)):
        return json.loads(raw)
    return raw


def _text(exc: BaseException) -> str:
    """`str(exc)`, for an exception whose `__str__` may itself raise (a hostile value's error)."""
    try:
        return str(exc)
    except Exception:
        return f"{type(exc).__name__} (its message cannot be shown)"


_ATOMS = (str, int, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """Where `value` holds something pydantic would not refuse but would not store faithfully,
    and what: ("['a'][2]", "is NaN or infinite, ..."), or None if there is nothing.

    JSON cannot spell NaN or an infinity, and pydantic writes `null` for one it finds in an
    untyped place (a `dict`, a `list`, `Any`, or a model field of such a type) instead of refusing
    it; it also writes a lone surrogate in a `dict[str, ...]` key as U+FFFD. Walks plain
    containers, pydantic models and dataclasses; other objects encode through their own type.
    """
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        kind = type(item)
        if kind is str:
            if not _utf8(item):
                return path, "holds a lone surrogate, which has no UTF-8 spelling"
            continue
        if kind in _ATOMS:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, "is NaN or infinite, which JSON cannot store"
            continue
        if isinstance(item, Decimal):
            if not item.is_finite():
                return path, "is NaN or infinite, which JSON cannot store"
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and not _utf8(key):
                    return f"{path}[{key!r}]", "is a key with a lone surrogate, which has no UTF-8 spelling"
                stack.append((f"{path}[{key!r}]", child))
        elif isinstance(item, _CONTAINERS):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
        elif isinstance(item, BaseModel):
            stack.extend((f"{path}.{name}", child) for name, child in item.__dict__.items())
            stack.extend((f"{path}.{name}", child) for name, child in (item.__pydantic_extra__ or {}).items())
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend((f"{path}.{f.name}", getattr(item, f.name, None)) for f in dataclasses.fields(item))
    return None


def find_non_finite(value: Any) -> str | None:
    """Where NaN or an infinity sits in `value` ("", "[2]", "['a'].b"), or None if there is none."""
    found = find_unstorable(value)
    return found[0] if found and "NaN" in found[1] else None


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _may_hide_unstorable(data: bytes) -> bool:
    """False when JSON from pydantic cannot stand for a value it did not store faithfully: it
    writes NaN and infinities as `null` (or, configured so, `NaN`/`Infinity` or strings) and a
    lone surrogate in a key as U+FFFD, so text without those holds none and the walk is skipped."""
    return b"null" in data or b"NaN" in data or b"Infinity" in data or b"\xef\xbf\xbd" in data


def _refuse_unstorable(value: Any, what: str) -> None:
    found = find_unstorable(value)
    if found is not None:
        path, problem = found
        raise UnstorableValueError(f"{what}{' at ' + path if path else ''} {problem}")


def check_storable(text: str | bytes, what: str = "the value") -> None:
    """Refuse JSON text the database cannot store: a lone surrogate (no UTF-8 spelling) or a NUL
    character (`\\u0000`, which PostgreSQL's `jsonb` refuses). Raises `UnstorableValueError`.

    The worker calls this on an outcome before it joins a finish batch, so that one unstorable
    result fails alone (as `WORKER_SERIALIZATION_ERROR`) instead of failing the whole batch.
    """
    if isinstance(text, str):
        try:
            data = text.encode()
        except UnicodeEncodeError:
            raise UnstorableValueError(f"{what} holds a lone surrogate, which has no UTF-8 spelling") from None
    else:
        data = text
    if b"\\u0000" in data and _holds_nul(json.loads(data)):
        raise UnstorableValueError(f"{what} holds a NUL character (\\x00), which PostgreSQL cannot store")


def _holds_nul(value: Any) -> bool:
    # Only when the text has "\u0000" in it, which may be an escaped backslash before "u0000".
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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


def _arguments_adapter(parameters: Mapping[str, inspect.Parameter], hints: Mapping[str, Any]) -> TypeAdapter[Any]:
    """One adapter for a whole call: a TypedDict of the parameters, so that a send validates and
    encodes every argument in one pass, and the worker decodes them in one, refusing unknown names."""
    fields = {
        name: (Required if param.default is param.empty else NotRequired)[hints[name]]
        for name, param in parameters.items()
    }
    arguments = TypedDict("Arguments", fields, total=False)  # type: ignore[misc]
    arguments.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return TypeAdapter(arguments)


@dataclass(frozen=True)
class TaskSignature:
    """The encoders a task needs: one per parameter, one for its `ok` value."""

    parameters: Mapping[str, inspect.Parameter]
    argument_adapters: Mapping[str, TypeAdapter[Any]]
    ok_adapter: TypeAdapter[Any]
    signature: inspect.Signature
    # Built once per task, so that a send binds and encodes without inspecting the function again.
    arguments_adapter: TypeAdapter[Any] = field(repr=False, compare=False, default=None)  # type: ignore[arg-type]
    positional: tuple[str, ...] = field(repr=False, compare=False, default=())
    required: frozenset[str] = field(repr=False, compare=False, default=frozenset())

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
        parameters = dict(signature.parameters)
        try:
            arguments_adapter = _arguments_adapter(parameters, hints)
        except Exception as exc:
            raise TaskDefinitionError(
                f"task {_describe(fn)}: its parameters cannot be encoded together: {exc}"
            ) from exc
        return cls(
            parameters=parameters,
            argument_adapters=adapters,
            ok_adapter=_adapter(ok_type, "the ok value of its TaskResult", fn),
            signature=signature,
            arguments_adapter=arguments_adapter,
            positional=tuple(n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD),
            required=frozenset(n for n, p in parameters.items() if p.default is p.empty),
        )

    def encode_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind a call to the signature and encode each argument; raise `CodecError` if it does not fit."""
        return json.loads(self.encode_arguments_json(args, kwargs))  # type: ignore[no-any-return]

    def encode_arguments_json(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The JSON text to store for a call; raise `CodecError` if it does not fit.

        What this accepts, the worker decodes: the text is decoded again here, as the worker will,
        so a value that cannot come back (a pydantic model changed into an invalid state after it
        was built, a number too long to read back) is refused now, at send, not in the worker.
        """
        try:
            values = self._bind(args, kwargs)
            try:
                data = self.arguments_adapter.dump_json(self.arguments_adapter.validate_python(values), warnings=False)
            except Exception:
                data = None  # The slow path below names the argument at fault.
            if data is None or (_may_hide_unstorable(data) and find_unstorable(values) is not None):
                self._encode_one_by_one(values)
                raise CodecError("the arguments cannot be encoded")  # the loop above raises first
            check_storable(data, "the arguments")
            text = data.decode()
            try:
                self.decode_arguments(json.loads(text))
            except (CodecError, ValueError) as exc:
                raise CodecError(f"the arguments do not read back as the task's types: {_text(exc)}") from exc
            return text
        except CodecError:
            raise
        except Exception as exc:  # a hostile value: __eq__, __hash__ or __str__ that raises, ...
            raise CodecError(f"the arguments cannot be encoded: {type(exc).__name__}: {_text(exc)}") from exc

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name (defaults not filled in: they are not stored)."""
        positional = self.positional
        if len(args) <= len(positional):
            values = dict(zip(positional, args, strict=False))
            for key in kwargs:
                if key in values or key not in self.parameters:
                    break
            else:
                values.update(kwargs)
                if self.required.issubset(values):
                    return values
        try:  # Only for a call that does not fit: inspect words the error as Python would.
            return dict(self.signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise CodecError(_text(exc)) from exc

    def _encode_one_by_one(self, values: Mapping[str, Any]) -> None:
        """Encode each argument on its own, to say which one cannot be encoded, and why."""
        for name, value in values.items():
            adapter = self.argument_adapters[name]
            try:
                adapter.dump_json(adapter.validate_python(value), warnings=False)
            except ValidationError as exc:
                raise CodecError(f"argument {name!r}: {_first_error(exc)}") from exc
            except Exception as exc:
                raise CodecError(f"argument {name!r} cannot be encoded: {_text(exc)}") from exc
            _refuse_unstorable(value, f"argument {name!r}")

    def decode_arguments(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """Turn stored arguments back into the annotated types; raise `CodecError` if they do not fit."""
        if not isinstance(encoded, Mapping):
            raise CodecError(f"stored arguments must be a JSON object, got {type(encoded).__name__}")
        try:
            return self.arguments_adapter.validate_python(encoded)  # type: ignore[no-any-return]
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


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data. Plain JSON is kept as it is (a NUL or lone surrogate in an
    error's text is the worker's to replace, and pydantic refuses a surrogate outright); any other
    value pydantic can dump (models, dataclasses, datetimes, UUIDs, ...) is dumped, as horsies does."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) is list:
        return [_jsonable(item) for item in value]
    if type(value) is dict and all(type(key) is str for key in value):
        return {key: _jsonable(item) for key, item in value.items()}
    return to_jsonable_python(value)


def _error_body(error: TaskError) -> dict[str, Any]:
    code = error.error_code
    try:
        # Any value pydantic can dump (models, dataclasses, datetimes, UUIDs, ...), as horsies takes it.
        data = _jsonable(error.data)
        exception = _jsonable(error.exception)
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
    dumps(body)  # Fail here, with the worker still holding the task, rather than at write time.
    return body


def _envelope(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> dict[str, Any]:
    return loads(encode_result_json(result, ok_adapter))  # type: ignore[no-any-return]


def encode_result(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> dict[str, Any]:
    """Encode a TaskResult envelope: `{"ok": value}` or `{"err": {...}}`; raise `CodecError` if it
    is not JSON."""
    return _envelope(result, ok_adapter)


def encode_result_json(result: TaskResult[Any, TaskError], ok_adapter: TypeAdapter[Any] | None) -> str:
    """The JSON text to store for a result, encoded once; raise `CodecError` (`UnstorableValueError`
    for NaN, infinities, lone surrogates and NUL characters) if it cannot be stored and read back.

    As with arguments, the ok value is decoded again here as `get()` will decode it, so a result
    that could not be read back is refused when the task finishes, not when someone asks for it.
    """
    try:
        if result.is_err():
            error = result.unwrap_err()
            if not isinstance(error, TaskError):
                raise CodecError(f"the err side must be a TaskError, got {type(error).__name__}")
            # An error's text is a diagnosis: the worker replaces a NUL or lone surrogate in it
            # (see `worker.execute.storable`) instead of refusing it, so it is not checked here.
            return dumps({"err": _error_body(error)})
        if ok_adapter is None:
            value = result.unwrap()
            _refuse_unstorable(value, "the ok value")
            text = dumps({"ok": value})
        else:
            value = result.unwrap()
            try:
                data = ok_adapter.dump_json(value, warnings=False)
            except Exception as exc:
                raise CodecError(f"the ok value cannot be encoded: {_text(exc)}") from exc
            if _may_hide_unstorable(data):
                _refuse_unstorable(value, "the ok value")
            try:
                ok_adapter.validate_python(json.loads(data))
            except (ValidationError, ValueError) as exc:
                raise CodecError(f"the ok value does not read back as the task's type: {_text(exc)}") from exc
            text = '{"ok":' + data.decode() + "}"
        check_storable(text, "the result")
        return text
    except CodecError:
        raise
    except Exception as exc:  # a hostile value: __eq__, __hash__ or __str__ that raises, ...
        raise CodecError(f"the result cannot be encoded: {type(exc).__name__}: {_text(exc)}") from exc


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
