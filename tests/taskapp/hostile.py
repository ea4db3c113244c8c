"""Tasks whose outcomes are hostile to storage or to the worker (tests/integration/test_hostile_outcomes.py).

Arguments are plain ASCII names; each task builds its hostile value itself, so that sending it
never depends on what `send()` accepts.
"""

from typing import Any

from horsies_django import TaskError, TaskResult, app

HOSTILE_TEXT = {"nul": "before\x00after", "surrogate": "lone \ud800 surrogate", "both": "\x00\udfff"}
HOSTILE_OK = {
    "nul": {"text": "a\x00b"},
    "surrogate": ["\ud800"],
    "key_surrogate": {"\udc00": 1},
    "nan": {"x": [1.0, float("nan")]},
    "inf": {"x": float("inf")},
    "minus_inf": [float("-inf")],
    "deep": None,  # built below: nested past the encoder's recursion limit
}


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ raised")


class UnprintableCode(str):
    """An error code whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")


HOSTILE_CODES = {"long": "C" * 150, "nul": "BAD\x00CODE", "surrogate": "BAD\ud800CODE"}


@app.task("tests.hostile_code")
def hostile_code(kind: str) -> TaskResult[int, TaskError]:
    """An error outcome whose code no error_code column takes."""
    return TaskResult(err=TaskError(error_code=HOSTILE_CODES[kind], message="refused"))


@app.task("tests.hostile_error_text")
def hostile_error_text(kind: str) -> TaskResult[int, TaskError]:
    """An error outcome whose message and data hold characters a database refuses."""
    text = HOSTILE_TEXT[kind]
    return TaskResult(err=TaskError(error_code="HOSTILE_TEXT", message=text, data={"detail": text, text: 1}))


@app.task("tests.hostile_ok")
def hostile_ok(kind: str) -> TaskResult[Any, TaskError]:
    """An ok result that cannot be stored as it is."""
    if kind == "deep":
        value: Any = []
        for _ in range(100_000):
            value = [value]
        return TaskResult(ok=value)
    return TaskResult(ok=HOSTILE_OK[kind])


@app.task("tests.unprintable")
def unprintable() -> TaskResult[int, TaskError]:
    raise Unprintable()


@app.task("tests.unprintable_code")
def unprintable_code() -> TaskResult[int, TaskError]:
    return TaskResult(err=TaskError(error_code=UnprintableCode("X"), message="its code cannot be printed"))


@app.task("tests.unprintable_message")
def unprintable_message() -> TaskResult[int, TaskError]:
    return TaskResult(err=TaskError(error_code="ODD", message=Unprintable()))  # type: ignore[arg-type]
