"""Ok/Err, TaskResult, TaskError and the built-in code enums. No database."""

import pytest

from horsies_django.types import (
    ContractCode,
    Err,
    Ok,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskError,
    TaskResult,
)
from horsies_django.types.codes import BUILTIN_CODES, builtin_code

ALL_BUILTIN = [
    member for family in (OperationalErrorCode, RetrievalCode, OutcomeCode, ContractCode) for member in family
]


def describe(result: Ok[int] | Err[str]) -> str:
    match result:
        case Ok(value):
            return f"ok:{value}"
        case Err(error):
            return f"err:{error}"
    return "unmatched"


# -- Ok / Err ---------------------------------------------------------------------------


def test_match_binds_the_value_of_each_side() -> None:
    assert describe(Ok(3)) == "ok:3"
    assert describe(Err("boom")) == "err:boom"


def test_ok_side() -> None:
    ok = Ok(5)
    assert ok.ok_value == 5
    assert ok.is_ok() is True
    assert ok.is_err() is False
    assert ok.unwrap() == 5
    assert ok.unwrap_or(99) == 5
    with pytest.raises(ValueError, match="unwrap_err"):
        ok.unwrap_err()


def test_err_side() -> None:
    err = Err("bad")
    assert err.err_value == "bad"
    assert err.is_ok() is False
    assert err.is_err() is True
    assert err.unwrap_err() == "bad"
    assert err.unwrap_or(99) == 99
    with pytest.raises(ValueError, match="unwrap"):
        err.unwrap()


def test_ok_and_err_hold_no_attribute_of_the_other_side() -> None:
    with pytest.raises(AttributeError):
        Ok(1).err_value  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        Err(1).ok_value  # type: ignore[attr-defined]  # noqa: B018


def test_map_transforms_ok_and_passes_err_through() -> None:
    assert Ok(2).map(lambda v: v * 10) == Ok(20)
    err: Err[str] = Err("bad")
    assert err.map(lambda v: pytest.fail("map must not call fn on Err")) is err


def test_and_then_chains_ok_and_short_circuits_err() -> None:
    def half(v: int) -> Ok[int] | Err[str]:
        return Ok(v // 2) if v % 2 == 0 else Err(f"{v} is odd")

    assert Ok(8).and_then(half).and_then(half) == Ok(2)
    assert Ok(6).and_then(half).and_then(half) == Err("3 is odd")
    err: Err[str] = Err("first")
    assert err.and_then(lambda v: pytest.fail("and_then must not call fn on Err")) is err


def test_ok_and_err_compare_by_side_and_value() -> None:
    assert Ok(1) == Ok(1)
    assert Ok(1) != Ok(2)
    assert Ok(1) != Err(1)
    assert Err("x") == Err("x")


# -- TaskResult -------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"ok": 1, "err": TaskError()}, {"ok": None, "err": None}])
def test_task_result_takes_exactly_one_side(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="exactly one of ok= or err="):
        TaskResult(**kwargs)


def test_task_result_ok_none_is_a_success() -> None:
    result: TaskResult[None, TaskError] = TaskResult(ok=None)
    assert result.is_ok() is True
    assert result.is_err() is False
    assert result.ok is None
    assert result.err is None
    assert result.unwrap() is None
    assert result.ok_value is None
    with pytest.raises(ValueError, match="unwrap_err"):
        result.unwrap_err()


def test_task_result_success_side() -> None:
    result: TaskResult[dict[str, int], TaskError] = TaskResult(ok={"n": 1})
    assert result.is_ok() and not result.is_err()
    assert result.ok == {"n": 1}
    assert result.err is None
    assert result.ok_value == {"n": 1}
    assert result.unwrap() == {"n": 1}
    with pytest.raises(ValueError):
        result.err_value  # noqa: B018
    with pytest.raises(ValueError, match="success result"):
        result.unwrap_err()


def test_task_result_error_side() -> None:
    error = TaskError(error_code="OUT_OF_STOCK", message="none left")
    result: TaskResult[int, TaskError] = TaskResult(err=error)
    assert result.is_err() and not result.is_ok()
    assert result.err is error
    assert result.ok is None
    assert result.err_value is error
    assert result.unwrap_err() is error
    with pytest.raises(ValueError):
        result.ok_value  # noqa: B018
    with pytest.raises(ValueError, match="OUT_OF_STOCK"):
        result.unwrap()


def test_task_result_match_args() -> None:
    match TaskResult(err=TaskError(error_code="NOPE")):
        case TaskResult(err=TaskError(error_code=code)):
            assert code == "NOPE"
        case _:
            pytest.fail("error result did not match the err= pattern")


def test_task_result_equality() -> None:
    assert TaskResult(ok=1) == TaskResult(ok=1)
    assert TaskResult(ok=1) != TaskResult(ok=2)
    assert TaskResult(err=TaskError(error_code="A")) == TaskResult(err=TaskError(error_code="A"))
    assert TaskResult(err=TaskError(error_code="A")) != TaskResult(err=TaskError(error_code="B"))
    # ok=None must not equal an error result even though both report .ok as None.
    assert TaskResult(ok=None) != TaskResult(err=TaskError())
    assert TaskResult(ok=1) != 1
    assert TaskResult(ok=1) != Ok(1)


def test_task_result_is_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(TaskResult(ok=1))


def test_task_result_repr() -> None:
    assert repr(TaskResult(ok=[1, "a"])) == "TaskResult(ok=[1, 'a'])"
    assert repr(TaskResult(ok=None)) == "TaskResult(ok=None)"
    error = TaskError(error_code="X")
    assert repr(TaskResult(err=error)) == f"TaskResult(err={error!r})"


# -- TaskError and codes ----------------------------------------------------------------


@pytest.mark.parametrize("member", ALL_BUILTIN, ids=str)
def test_task_error_accepts_builtin_enum_member(member: OperationalErrorCode) -> None:
    error = TaskError(error_code=member)
    assert error.error_code is member


@pytest.mark.parametrize("member", ALL_BUILTIN, ids=str)
def test_task_error_rejects_builtin_code_spelled_as_string(member: OperationalErrorCode) -> None:
    with pytest.raises(ValueError, match=rf"{type(member).__name__}\.{member.value}"):
        TaskError(error_code=member.value)


@pytest.mark.parametrize("code", ["OUT_OF_STOCK", "unhandled_exception", "payment.declined"])
def test_task_error_accepts_user_string_codes(code: str) -> None:
    error = TaskError(error_code=code, message="m", data={"k": [1]})
    assert error.error_code == code
    assert type(error.error_code) is str
    assert error.message == "m"
    assert error.data == {"k": [1]}


def test_task_error_defaults_and_frozen() -> None:
    error = TaskError()
    assert (error.error_code, error.message, error.data, error.exception) == (None, None, None, None)
    with pytest.raises(ValueError):
        error.message = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("member", ALL_BUILTIN, ids=str)
def test_code_enum_is_its_string(member: OperationalErrorCode) -> None:
    assert member == member.value
    assert str(member) == member.value
    assert f"{member}" == member.value
    assert BUILTIN_CODES[member.value] is member
    assert builtin_code(member.value) is member


def test_builtin_code_lookup_of_user_code_is_none() -> None:
    assert builtin_code("OUT_OF_STOCK") is None
    assert OperationalErrorCode.UNHANDLED_EXCEPTION == "UNHANDLED_EXCEPTION"
    assert OperationalErrorCode.UNHANDLED_EXCEPTION != "WORKER_CRASHED"
