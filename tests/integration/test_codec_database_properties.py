"""The codec's promise, through the real database (Hypothesis): a value `send()` accepts is stored
and read back, as the worker reads its row, equal to the value sent; a value it refuses writes no
row. PostgreSQL's jsonb and SQLite's text both."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from horsies_django import Err, TaskError, TaskResult, app
from horsies_django.models import Task

pytestmark = pytest.mark.django_db(transaction=True)

ANY_CHAR = st.characters(codec=None, exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=10)
# In untyped places jsonb keeps numbers as decimals: a float beyond 1e15 may come back as an int
# (docs/api.md, "Arguments and results"); typed float fields keep every finite value.
UNTYPED_FLOAT = st.floats(max_value=1e15, min_value=-1e15) | st.sampled_from([float("nan"), float("inf")])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | UNTYPED_FLOAT | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=10,
)


class Sample(BaseModel):
    data: dict[str, Any]
    ratio: float
    note: str


@app.task("tests.properties.store")
def store(value: Any, sample: Sample | None = None) -> TaskResult[Any, TaskError]:
    return TaskResult(ok=value)


SAMPLES = st.none() | st.builds(Sample, data=st.dictionaries(TEXT, JSON, max_size=3), ratio=st.floats(), note=TEXT)


@settings(
    max_examples=int(os.environ.get("HORSIES_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=JSON, sample=SAMPLES)
def test_what_send_accepts_is_stored_and_read_back_equal(value: Any, sample: Sample | None) -> None:
    rows_before = Task.objects.count()
    result = store.send(value, sample)
    if isinstance(result, Err):
        assert Task.objects.count() == rows_before
        return
    task_id = result.unwrap().task_id
    # The stored column, decoded from JSON as the worker's claim decodes it.
    row = Task.objects.values_list("arguments", flat=True).get(pk=task_id)
    decoded = store.signature.decode_arguments(row)
    assert decoded["value"] == value
    assert decoded.get("sample") == sample
