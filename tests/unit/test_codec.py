"""TaskSignature: definition errors, argument and result encoding. No database."""

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pydantic
import pytest
from pydantic import TypeAdapter

from horsies_django.types import OperationalErrorCode, OutcomeCode, TaskError, TaskResult
from horsies_django.types.codec import (
    CodecError,
    TaskDefinitionError,
    TaskSignature,
    decode_result,
    dumps,
    encode_result,
    encode_result_json,
)


class Item(pydantic.BaseModel):
    sku: str
    qty: int


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Plain:
    """A class pydantic has no schema for."""


# -- definition errors ------------------------------------------------------------------


def no_return(a: int):  # type: ignore[no-untyped-def]
    return TaskResult(ok=a)


def returns_int(a: int) -> int:
    return a


def returns_bare_task_result(a: int) -> TaskResult:  # type: ignore[type-arg]
    return TaskResult(ok=a)


def returns_str_error(a: int) -> TaskResult[int, str]:
    return TaskResult(ok=a)


def unannotated_param(a, b: int) -> TaskResult[int, TaskError]:  # type: ignore[no-untyped-def]
    return TaskResult(ok=b)


def star_args(*args: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=0)


def star_kwargs(**kwargs: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=0)


def positional_only(a: int, /) -> TaskResult[int, TaskError]:
    return TaskResult(ok=a)


def plain_class_param(p: Plain) -> TaskResult[int, TaskError]:
    return TaskResult(ok=0)


def plain_class_ok() -> TaskResult[Plain, TaskError]:
    return TaskResult(ok=Plain())


def unresolvable(a: "NoSuchType") -> TaskResult[int, TaskError]:  # type: ignore[name-defined]  # noqa: F821
    return TaskResult(ok=0)


@pytest.mark.parametrize(
    ("fn", "fragment"),
    [
        (no_return, "TaskResult[T, TaskError]"),
        (returns_int, "TaskResult[T, TaskError]"),
        (returns_bare_task_result, "TaskResult[T, TaskError]"),
        (returns_str_error, "must be TaskError"),
        (unannotated_param, "parameter 'a' needs a type annotation"),
        (star_args, "parameter 'args'"),
        (star_kwargs, "parameter 'kwargs'"),
        (positional_only, "parameter 'a' is positional-only"),
        (plain_class_param, "parameter 'p' has type"),
        (plain_class_ok, "the ok value"),
        (unresolvable, "cannot resolve its annotations"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_bad_definition_names_function_and_file(fn: Callable[..., Any], fragment: str) -> None:
    with pytest.raises(TaskDefinitionError) as info:
        TaskSignature.of(fn)
    message = str(info.value)
    assert fragment in message
    assert repr(fn.__qualname__) in message
    assert f"{__file__}:{fn.__code__.co_firstlineno}" in message


def test_keyword_only_parameters_are_fine() -> None:
    def kw_only(*, a: int, b: str = "x") -> TaskResult[int, TaskError]:
        return TaskResult(ok=a)

    signature = TaskSignature.of(kw_only)
    assert set(signature.argument_adapters) == {"a", "b"}
    assert signature.encode_arguments((), {"a": 1}) == {"a": 1}


# -- arguments --------------------------------------------------------------------------

ROUND_TRIP = [
    (Item, Item(sku="A-1", qty=3), {"sku": "A-1", "qty": 3}),
    (Point, Point(1.5, -2.0), {"x": 1.5, "y": -2.0}),
    (datetime, datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), "2024-05-06T07:08:09Z"),
    (date, date(2024, 2, 29), "2024-02-29"),
    (UUID, UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    (Decimal, Decimal("10.05"), "10.05"),
    (list[int], [1, 2, 3], [1, 2, 3]),
    (dict[str, float], {"a": 1.5, "b": -0.25}, {"a": 1.5, "b": -0.25}),
    (Item | None, None, None),
    (Item | None, Item(sku="B", qty=0), {"sku": "B", "qty": 0}),
]


def signature_for(hint: Any) -> TaskSignature:
    def task(value) -> TaskResult[int, TaskError]:  # type: ignore[no-untyped-def]
        return TaskResult(ok=0)

    task.__annotations__["value"] = hint
    return TaskSignature.of(task)


@pytest.mark.parametrize(("hint", "value", "stored"), ROUND_TRIP, ids=lambda v: repr(v)[:30])
def test_argument_round_trip(hint: Any, value: Any, stored: Any) -> None:
    signature = signature_for(hint)
    encoded = signature.encode_arguments((value,), {})
    assert encoded == {"value": stored}
    dumps(encoded)  # plain JSON
    decoded = signature.decode_arguments(encoded)
    assert decoded == {"value": value}
    assert type(decoded["value"]) is type(value)


def test_decimal_keeps_precision_and_datetime_keeps_timezone() -> None:
    def task(amount: Decimal, at: datetime) -> TaskResult[int, TaskError]:
        return TaskResult(ok=0)

    signature = TaskSignature.of(task)
    at = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    decoded = signature.decode_arguments(signature.encode_arguments((Decimal("0.1000000000000000000001"), at), {}))
    assert decoded["amount"] == Decimal("0.1000000000000000000001")
    assert decoded["at"].utcoffset() is not None
    assert decoded["at"] == at


def order(item: Item, count: int, note: str = "") -> TaskResult[int, TaskError]:
    return TaskResult(ok=count)


ORDER = TaskSignature.of(order)


def test_positional_and_keyword_binding_store_the_same_dict() -> None:
    item = Item(sku="S", qty=1)
    positional = ORDER.encode_arguments((item, 2, "n"), {})
    keyword = ORDER.encode_arguments((), {"note": "n", "count": 2, "item": item})
    mixed = ORDER.encode_arguments((item,), {"count": 2, "note": "n"})
    assert positional == keyword == mixed == {"item": {"sku": "S", "qty": 1}, "count": 2, "note": "n"}


def test_dict_argument_is_validated_into_the_model() -> None:
    encoded = ORDER.encode_arguments(({"sku": "S", "qty": "4"}, 1), {})
    assert encoded == {"item": {"sku": "S", "qty": 4}, "count": 1}
    assert ORDER.decode_arguments(encoded)["item"] == Item(sku="S", qty=4)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((Item(sku="S", qty=1),), {}),  # missing count
        ((Item(sku="S", qty=1), 1, "n", "extra"), {}),  # too many
        ((Item(sku="S", qty=1), 1), {"colour": "red"}),  # unknown kwarg
        ((Item(sku="S", qty=1), 1), {"count": 2}),  # given twice
        ((Item(sku="S", qty=1), "many"), {}),  # wrong type
        (({"sku": "S"}, 1), {}),  # model missing a field
        ((Plain(), 1), {}),  # not a model at all
    ],
    ids=["missing", "too-many", "unknown-kwarg", "twice", "wrong-type", "bad-model", "wrong-object"],
)
def test_bad_call_is_a_codec_error(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        ORDER.encode_arguments(args, kwargs)


def test_wrong_type_error_names_the_argument() -> None:
    with pytest.raises(CodecError, match="argument 'count'"):
        ORDER.encode_arguments((Item(sku="S", qty=1), "many"), {})


def amount(value: float) -> TaskResult[int, TaskError]:
    return TaskResult(ok=0)


def amounts(values: list[float]) -> TaskResult[int, TaskError]:
    return TaskResult(ok=0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_float_argument_is_a_codec_error(bad: float) -> None:
    # JSON has no spelling for NaN/Infinity; encode_arguments promises CodecError for values that
    # cannot be stored, and its output must always be valid for dumps().
    with pytest.raises(CodecError):
        TaskSignature.of(amount).encode_arguments((bad,), {})
    with pytest.raises(CodecError):
        TaskSignature.of(amounts).encode_arguments(([1.0, bad],), {})


def test_decode_arguments_rejects_unknown_keys() -> None:
    with pytest.raises(CodecError, match="colour"):
        ORDER.decode_arguments({"item": {"sku": "S", "qty": 1}, "count": 1, "colour": "red"})


def test_decode_arguments_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(CodecError, match="qty"):
        ORDER.decode_arguments({"item": {"sku": "S", "qty": "lots"}, "count": 1})


# -- results ----------------------------------------------------------------------------


def test_ok_result_round_trip_is_typed() -> None:
    adapter = TypeAdapter(Item)
    envelope = encode_result(TaskResult(ok=Item(sku="S", qty=2)), adapter)
    assert envelope == {"ok": {"sku": "S", "qty": 2}}
    dumps(envelope)
    decoded = decode_result(envelope, adapter)
    assert decoded.is_ok()
    assert decoded.unwrap() == Item(sku="S", qty=2)
    assert isinstance(decoded.unwrap(), Item)


@pytest.mark.parametrize(
    ("hint", "value"),
    [(datetime, datetime(2024, 1, 2, 3, 4, tzinfo=UTC)), (list[UUID], [UUID(int=7)]), (int | None, None)],
    ids=["datetime", "list-uuid", "optional-none"],
)
def test_ok_result_round_trip_other_types(hint: Any, value: Any) -> None:
    adapter = TypeAdapter(hint)
    assert decode_result(encode_result(TaskResult(ok=value), adapter), adapter) == TaskResult(ok=value)


def test_ok_without_adapter_stays_plain_json() -> None:
    stored = {"ok": {"sku": "S", "at": "2024-01-01T00:00:00Z"}}
    decoded = decode_result(stored, None)
    assert decoded.unwrap() == {"sku": "S", "at": "2024-01-01T00:00:00Z"}
    assert encode_result(TaskResult(ok=[1, "a", None]), None) == {"ok": [1, "a", None]}


def test_err_result_with_user_code_round_trip() -> None:
    error = TaskError(error_code="OUT_OF_STOCK", message="none left", data={"sku": "S", "left": 0})
    envelope = encode_result(TaskResult(err=error), TypeAdapter(int))
    assert envelope == {
        "err": {
            "error_code": "OUT_OF_STOCK",
            "message": "none left",
            "data": {"sku": "S", "left": 0},
            "exception": None,
        }
    }
    dumps(envelope)
    decoded = decode_result(envelope, TypeAdapter(int))
    assert decoded.is_err()
    assert decoded.unwrap_err() == error
    assert type(decoded.unwrap_err().error_code) is str


@pytest.mark.parametrize("code", [OperationalErrorCode.UNHANDLED_EXCEPTION, OutcomeCode.TASK_TIMEOUT], ids=str)
def test_err_result_with_builtin_code_decodes_to_the_enum(code: Any) -> None:
    envelope = encode_result(TaskResult(err=TaskError(error_code=code, message="m")), None)
    assert envelope["err"]["error_code"] == code.value
    assert type(envelope["err"]["error_code"]) is str
    decoded = decode_result(envelope, None).unwrap_err()
    assert decoded.error_code is code
    assert decoded.message == "m"


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    "data",
    [object(), {"x": math.nan}, {"x": math.inf}, _BadStr(), b"\xff\xfe"],
    ids=["object", "nan", "inf", "bad-str", "non-utf8-bytes"],
)
def test_err_data_the_codec_cannot_encode_is_a_codec_error(data: Any) -> None:
    with pytest.raises(CodecError, match=r"TaskError\.data|JSON|NaN|nan|inf|NUL|surrogate"):
        encode_result(TaskResult(err=TaskError(error_code="X", data=data)), None)


@dataclasses.dataclass
class _Point:
    x: int
    when: datetime


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({1, 2}, [1, 2]),
        (datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "2026-01-02T03:04:00Z"),
        (UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Decimal("1.50"), "1.50"),
        (_Point(1, datetime(2026, 1, 1, tzinfo=UTC)), {"x": 1, "when": "2026-01-01T00:00:00Z"}),
        ({"nested": [1, "\\u0000", None]}, {"nested": [1, "\\u0000", None]}),
        (10**30, 10**30),
    ],
    ids=["set", "datetime", "uuid", "decimal", "dataclass", "escaped-nul", "huge-int"],
)
def test_err_data_takes_anything_the_codec_can_encode(data: Any, stored: Any) -> None:
    envelope = encode_result(TaskResult(err=TaskError(error_code="X", data=data)), None)
    assert envelope["err"]["data"] == stored
    assert decode_result(json.loads(dumps(envelope)), None).unwrap_err().data == stored


@pytest.mark.parametrize("text", ["\ud800", "a\x00b", "\\\x00"], ids=["surrogate", "nul", "backslash-nul"])
def test_text_a_database_refuses_is_a_codec_error_before_the_write(text: str) -> None:
    with pytest.raises(CodecError, match="surrogate|NUL"):
        encode_result_json(TaskResult(ok=text), None)
    assert encode_result_json(TaskResult(ok="\\u0000"), None) == '{"ok":"\\\\u0000"}'


@pytest.mark.parametrize("text", ["\ud800", "a\x00b", "\\\x00"], ids=["surrogate", "nul", "backslash-nul"])
def test_text_a_database_refuses_in_an_error_is_left_for_the_worker_to_replace(text: str) -> None:
    # An error's text and data are a diagnosis: the codec encodes them as they are, and the
    # worker's `storable()` replaces what no database stores (tests/integration/test_hostile_outcomes.py).
    for error in (TaskError(message=text), TaskError(error_code=text), TaskError(error_code="X", data=[text])):
        assert decode_result(json.loads(encode_result_json(TaskResult(err=error), None)), None).unwrap_err() == error


def test_ok_value_not_json_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_result(TaskResult(ok=object()), None)
    with pytest.raises(CodecError):
        encode_result(TaskResult(ok=math.nan), TypeAdapter(float))


def test_err_side_that_is_not_a_task_error_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="TaskError"):
        encode_result(TaskResult(err="oops"), None)


@pytest.mark.parametrize(
    "envelope",
    [
        None,
        "ok",
        [1],
        {},
        {"value": 1},
        {"ok": 1, "err": {}},
        {"ok": 1, "extra": 2},
        {"err": "not a dict"},
        {"err": {"error_code": 5}},
        {"err": {"error_code": "X", "exception": "not a dict"}},
    ],
    ids=repr,
)
def test_malformed_envelope_is_a_codec_error(envelope: Any) -> None:
    with pytest.raises(CodecError):
        decode_result(envelope, None)


def test_ok_value_that_does_not_fit_the_adapter_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_result({"ok": {"sku": "S"}}, TypeAdapter(Item))
    with pytest.raises(CodecError):
        decode_result({"ok": None}, TypeAdapter(int))
