"""horsies' decorator options: default_unhandled_error_code, good_until, and refusing wrapped
functions (horsies' E104); the error-code spelling rule for mappers. Fresh registries, no database."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.checks import Tags, run_checks
from django.test import override_settings

from horsies_django import Horsies, OperationalErrorCode, TaskDefinitionError, TaskError, TaskResult
from horsies_django.conf import SettingsError, parse


@pytest.fixture(autouse=True)
def any_queue(settings: Any) -> None:
    settings.HORSIES = {k: v for k, v in settings.HORSIES.items() if k != "QUEUES"}


def fails(kind: str) -> TaskResult[int, TaskError]:
    raise {"timeout": TimeoutError, "key": KeyError, "value": ValueError}[kind](kind)


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


def code_of(task: Any, exc: BaseException) -> Any:
    return task.code_for_exception(exc)


def test_default_unhandled_error_code_names_exceptions_no_mapper_names() -> None:
    task = Horsies().task(
        "t", fails, exception_mapper={TimeoutError: "TIMEOUT"}, default_unhandled_error_code="TASK_CRASHED"
    )
    assert code_of(task, TimeoutError()) == "TIMEOUT"
    assert code_of(task, KeyError()) == "TASK_CRASHED"


def test_resolution_order_task_mapper_global_mapper_task_default_global_default() -> None:
    registry = Horsies()
    plain = registry.task("plain", fails)
    with_default = registry.task("with_default", fails, default_unhandled_error_code="TASK_DEFAULT")
    mapped = registry.task("mapped", fails, exception_mapper={KeyError: "TASK_MAPPED"})
    with override_settings(
        HORSIES={"EXCEPTION_MAPPER": {KeyError: "GLOBAL_MAPPED"}, "DEFAULT_UNHANDLED_ERROR_CODE": "GLOBAL_DEFAULT"}
    ):
        assert code_of(mapped, KeyError()) == "TASK_MAPPED"
        assert code_of(plain, KeyError()) == "GLOBAL_MAPPED"
        assert code_of(with_default, ValueError()) == "TASK_DEFAULT"
        assert code_of(plain, ValueError()) == "GLOBAL_DEFAULT"
    assert code_of(plain, ValueError()) is OperationalErrorCode.UNHANDLED_EXCEPTION


def test_mapper_matches_the_nearest_mapped_base_class() -> None:
    # Deliberately unlike horsies (exact class only): a subclass finds its nearest mapped base.
    task = Horsies().task("t", fails, exception_mapper={OSError: "OS", ConnectionError: "CONNECTION"})
    assert code_of(task, ConnectionResetError()) == "CONNECTION"
    assert code_of(task, FileNotFoundError()) == "OS"


def test_a_builtin_code_as_default_comes_back_as_the_enum_member() -> None:
    task = Horsies().task("t", fails, default_unhandled_error_code="TASK_EXCEPTION")
    assert code_of(task, ValueError()) is OperationalErrorCode.TASK_EXCEPTION


BAD_CODES = [
    ("lower", "crashed"),
    ("exception-name", "TimeoutError"),
    ("empty", ""),
    ("nul", "A\x00"),
    ("surrogate", "\ud800"),
    ("int", 5),
    ("nan", math.nan),
    ("bad-str", _BadStr()),
    ("huge", "A" * 10**6),
    ("longer-than-the-column", "A" * 101),
]


@pytest.mark.parametrize("code", [b[1] for b in BAD_CODES], ids=[b[0] for b in BAD_CODES])
def test_bad_codes_are_refused_at_import(code: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="UPPER_SNAKE_CASE"):
        Horsies().task("t", fails, default_unhandled_error_code=code)
    with pytest.raises(TaskDefinitionError, match="UPPER_SNAKE_CASE"):
        Horsies().task("t", fails, exception_mapper={ValueError: code})


@pytest.mark.parametrize("code", [b[1] for b in BAD_CODES], ids=[b[0] for b in BAD_CODES])
def test_bad_codes_in_settings_are_check_e008(code: Any) -> None:
    for raw in ({"DEFAULT_UNHANDLED_ERROR_CODE": code}, {"EXCEPTION_MAPPER": {ValueError: code}}):
        with pytest.raises(SettingsError) as info:
            parse(raw)
        assert info.value.check_id == "horsies_django.E008"
        with override_settings(HORSIES=raw):
            assert [m.id for m in run_checks(tags=[Tags.compatibility])] == ["horsies_django.E008"]


def test_good_until_on_the_decorator_is_the_default_deadline() -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    task = Horsies().task("t", fails, good_until=deadline)
    assert task.options.good_until == deadline
    later = deadline + timedelta(days=1)
    assert task.with_options(good_until=later).options.good_until == later
    assert task.with_options(priority=5).options.good_until == deadline
    assert task.with_options(good_until=None).options.good_until is None  # cleared, as in horsies


@pytest.mark.parametrize("good_until", [datetime(2030, 1, 1), "2030-01-01T00:00:00Z", 1893456000, math.inf], ids=repr)
def test_good_until_must_be_an_aware_datetime(good_until: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="good_until must be a timezone-aware datetime"):
        Horsies().task("t", fails, good_until=good_until)


def test_a_function_wrapped_by_another_decorator_is_refused() -> None:
    # horsies' E104: the wrapper's (*args, **kwargs) hides the signature arguments are encoded by.
    with pytest.raises(TaskDefinitionError, match="already wrapped by another decorator"):
        Horsies().task("t", logged(fails))
    registry = Horsies()
    task = registry.task("t", fails)
    with pytest.raises(TaskDefinitionError, match="already a task"):
        registry.task("t2", task)
    assert registry.list_tasks() == ["t"]
