"""Property tests for the codec (Hypothesis): whatever it accepts at send decodes, as the worker
decodes it, to a value equal to the one sent; whatever it refuses, it refuses with `CodecError`
at send, never with another exception and never later; and it refuses nothing clean."""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from horsies_django.types.codec import (
    CodecError,
    TaskSignature,
    UnstorableValueError,
    decode_result,
    encode_result_json,
)
from horsies_django.types.results import TaskError, TaskResult
from horsies_django.worker.execute import Outcome, storable

PROPERTY = settings(
    max_examples=int(os.environ.get("HORSIES_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Every code point, lone surrogates and NUL included: the codec must sort them out, not Hypothesis.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=12)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**4290, max_value=10**4310)  # near Python's int/str digit limit
    | st.floats()  # NaN and infinities included
    | TEXT
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)


class Reading(BaseModel):
    values: dict[str, Any]
    extra: Any = None
    level: float = 0.0
    label: str = ""


@dataclass
class Point:
    x: float
    tag: Any


# (annotation, values to try): typed values and values that do not fit the type at all.
CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (int, st.integers() | st.integers(min_value=10**4290, max_value=10**4310) | JSON),
    (float, st.floats() | st.integers() | JSON),
    (str, TEXT | JSON),
    (bool, st.booleans() | JSON),
    (Any, JSON),
    (dict, st.dictionaries(TEXT, JSON, max_size=4) | JSON),
    (list[float], st.lists(st.floats(), max_size=5) | JSON),
    (dict[str, int], st.dictionaries(TEXT, st.integers(), max_size=4)),
    (tuple[int, str], st.tuples(st.integers(), TEXT)),
    (
        Reading,
        st.builds(Reading, values=st.dictionaries(TEXT, JSON, max_size=3), extra=JSON, level=st.floats(), label=TEXT),
    ),
    (Point, st.builds(Point, x=st.floats(), tag=JSON)),
    (datetime, st.datetimes(timezones=st.just(UTC))),
    (date, st.dates()),
    (uuid.UUID, st.uuids()),
    (Decimal, st.decimals(allow_nan=True, allow_infinity=True)),
    (str | None, st.none() | TEXT),
]


def task_for(hint: Any) -> Any:
    def task(value, label: str = "") -> TaskResult[Any, TaskError]:  # type: ignore[no-untyped-def]
        return TaskResult(ok=None)

    task.__annotations__["value"] = hint
    task.__annotations__["return"] = TaskResult[hint, TaskError]
    return task


SIGNATURE = {index: TaskSignature.of(task_for(hint)) for index, (hint, _) in enumerate(CASES)}
CASE = st.sampled_from(range(len(CASES))).flatmap(lambda i: st.tuples(st.just(i), CASES[i][1]))


def clean(value: Any) -> bool:
    """True if nothing in `value` is one of the things storage cannot hold: NaN/inf, NUL, a lone
    surrogate, or an int too long for Python to read back from text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, Decimal) and not item.is_finite():
            return False
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10**4300:
            return False
        if isinstance(item, str):
            if "\x00" in item or any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, BaseModel):
            stack.extend(item.__dict__.values())
        elif isinstance(item, Point):
            stack.extend([item.x, item.tag])
    return True


def refuse_constants(name: str) -> Any:
    raise AssertionError(f"stored text holds {name}, which is not JSON")


def assert_storable(text: str) -> Any:
    """The text is what PostgreSQL and SQLite store: UTF-8, strict JSON, no NUL anywhere."""
    text.encode()  # no lone surrogate
    decoded = json.loads(text, parse_constant=refuse_constants)
    assert clean(decoded)
    return decoded


@PROPERTY
@given(CASE)
def test_accepted_arguments_round_trip_equal_and_refusals_are_codec_errors(case: tuple[int, Any]) -> None:
    index, value = case
    hint = CASES[index][0]
    signature = SIGNATURE[index]
    try:
        text = signature.encode_arguments_json((value,), {})
    except CodecError:
        # Refused at send. It must be a value that does not fit the type or cannot be stored.
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError:
            return
        assert not clean(value), f"a clean value of type {hint!r} was refused: {value!r}"
        return
    # Accepted: the worker reads back exactly what was meant.
    decoded = signature.decode_arguments(assert_storable(text))
    assert decoded == {"value": TypeAdapter(hint).validate_python(value)}


@PROPERTY
@given(CASE)
def test_accepted_results_round_trip_equal_and_refusals_are_codec_errors(case: tuple[int, Any]) -> None:
    index, value = case
    hint = CASES[index][0]
    adapter = SIGNATURE[index].ok_adapter
    try:
        validated = adapter.validate_python(value)  # the worker checks the type before encoding
    except ValidationError:
        return
    try:
        text = encode_result_json(TaskResult(ok=validated), adapter)
    except CodecError:
        assert not clean(validated), f"a clean {hint!r} result was refused: {validated!r}"
        return
    assert decode_result(assert_storable(text), adapter).unwrap() == validated


@PROPERTY
@given(code=TEXT, message=TEXT, data=JSON)
def test_error_results_are_stored_whole_or_made_storable(code: str, message: str, data: Any) -> None:
    # The codec refuses only what JSON cannot hold; NUL and lone surrogates in an error's text are
    # the worker's to replace (`storable`), so that the task keeps the code it failed with.
    error = TaskError(error_code=code, message=message, data=data)
    try:
        text = encode_result_json(TaskResult(err=error), None)
    except CodecError as exc:
        assert isinstance(exc, UnstorableValueError) or "Out of range float" in str(exc) or "digits" in str(exc)
        return
    outcome = storable(Outcome(ok=False, result_json=text, error_code=code, error_message=message), "t")
    decoded = decode_result(assert_storable(outcome.result_json), None).unwrap_err()
    if clean([code, message, data]):
        assert (decoded.error_code, decoded.message, decoded.data) == (code, message, data)
    else:
        assert_storable(json.dumps([outcome.error_code, outcome.error_message], ensure_ascii=False))


@PROPERTY
@given(st.lists(JSON, max_size=3), st.dictionaries(TEXT, JSON, max_size=3))
def test_any_call_shape_is_accepted_or_refused_with_codec_error(args: list[Any], kwargs: dict[str, Any]) -> None:
    signature = SIGNATURE[0]  # (value: int, label: str = "")
    try:
        text = signature.encode_arguments_json(tuple(args), kwargs)
    except CodecError:
        return
    decoded = signature.decode_arguments(assert_storable(text))
    assume(decoded)
    assert set(decoded) <= {"value", "label"}
    assert "value" in decoded
